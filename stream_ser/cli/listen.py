"""``stream-ser listen``: score live audio (an input device, several devices, or a file replayed
at real-time pace) with the terminal UI or one line per hop.

The listening itself is :class:`stream_ser.session.ListenSession` (the same with and without
the UI); this module checks the options, opens the outputs and prints what the session reports.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..text import printable
from .common import NO_INPUT_DEVICE, Outputs, _checked_model, _error, _names_problem, _Stop, _warm_up

log = logging.getLogger("stream_ser")


def _listen_wants_tui(args: argparse.Namespace) -> bool:
    """Whether ``listen`` opens the terminal UI: stdin and stdout are terminals, TERM is not
    ``dumb``, and neither ``--no-tui`` nor ``--format jsonl`` (JSON lines to stdout) was given."""
    import os

    if getattr(args, "no_tui", False) or getattr(args, "format", "lines") != "lines":
        return False
    if os.environ.get("TERM", "") == "dumb":
        return False
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _listen_source(args: argparse.Namespace, sample_rate_hz: int):
    """``open_source`` for the listening session: one device (or a replayed file), or several
    devices as the channels of one stream (:class:`~stream_ser.sources.MultiDeviceSource`)."""
    from ..audio import MultiDeviceSource
    from ..sources import MicrophoneSource

    devices = args.device or []
    if len(devices) > 1:
        return lambda: MultiDeviceSource(devices, sample_rate_hz=sample_rate_hz)
    device = devices[0] if devices else None
    return lambda: MicrophoneSource(
        device=device, sample_rate_hz=sample_rate_hz, replay=args.input, realtime=not args.fast, channels=args.channels
    )


def _check_listen_args(args: argparse.Namespace) -> str | None:
    """Combinations of ``listen`` options that cannot work (the message), or None."""
    devices = args.device or []
    replay = "--demo" if getattr(args, "demo", False) else "--input"
    if len(devices) > 1:
        if args.input:
            return f"{replay} replays one file; it cannot be combined with several --device"
        if args.channels is not None:
            return ("--channels selects channels of one device or file; with several --device each device is "
                    "one channel (its own channels averaged)")
        return _names_problem(args, len(devices))
    from ..audio import MAX_CHANNELS

    if len(devices) > MAX_CHANNELS:
        return f"at most {MAX_CHANNELS} devices at once"
    if args.input and devices:
        return f"{replay} replays a file instead of a device; give one or the other"
    return _names_problem(args, len(devices))


def _check_input_devices(args: argparse.Namespace) -> None:
    """Make sure the machine has an input device before ``listen`` opens one.

    Each ``--device`` (or the default input) is looked up as the session will look it up. When
    that fails because the machine has no input device at all, the command ends here with one
    line and status 1 instead of opening the terminal UI only to show the error there; any other
    problem (no device matches a name, ...) is left to the session, which reports it as before.

    Raises:
        AudioSourceError: :data:`NO_INPUT_DEVICE` when PortAudio lists no input device, or the
            reason PortAudio is unusable (not installed).
    """
    from ..audio import devices as sources

    try:
        for spec in args.device or [None]:
            sources.find_input_device(spec)
    except sources.AudioSourceError:
        if not sources.list_input_devices(include_pulse_sources=False):
            raise sources.AudioSourceError(NO_INPUT_DEVICE) from None


def _use_demo(args: argparse.Namespace) -> None:
    """``listen --demo``: replay the shipped demo recording, as ``--input`` would.

    Raises:
        AudioSourceError: If the installation lacks the recording.
    """
    from ..audio import AudioSourceError

    if getattr(args, "demo", False):
        from ..demo import demo_recording

        try:
            args.input = str(demo_recording())
        except FileNotFoundError as exc:
            raise AudioSourceError(str(exc)) from None


def cmd_listen(args: argparse.Namespace, outputs: Outputs) -> int:
    from ..session import CalibrationProgress, ListenSession, PredictionMade, SessionOptions, SessionStarted
    model = _checked_model(args, _check_listen_args(args))
    if model is None:
        return 2
    cfg = model.feature_config
    if args.calibrate and model.metadata.speaker_norm is None:
        _error(
            f"--calibrate: the model {model.name} does not normalise speakers (no speaker_norm in "
            "its metadata; `stream-ser info` shows it), so there is nothing to calibrate. Use a model exported with "
            "`python -m training.export --speaker-norm causal`."
        )
        return 2
    if not args.input:
        _check_input_devices(args)  # one error line, before any output is opened or the UI takes the screen
    csv_sink = outputs.open_csv(model.labels)
    tui = _listen_wants_tui(args)
    # standard output gets printed lines or JSON lines, except under the UI, which shows the predictions
    stdout = None if tui else outputs.stdout
    files = outputs.files
    _warm_up(cfg, args.quiet)
    # The session's worker opens the source (a device error becomes a clean session end),
    # scores every hop, writes the sinks and closes them; the same code runs with and
    # without the terminal UI.
    session = ListenSession(
        model,
        _listen_source(args, cfg.sample_rate_hz),
        ([stdout] if stdout is not None else []) + files,
        SessionOptions(hop_s=args.hop, duration_s=args.duration, channel_names=args.channel_names,
                       calibrate_s=args.calibrate or 0.0, adapt=args.adapt, gate=args.gate,
                       # only the UI's meter shows levels; without it the worker wakes once per hop
                       level_interval_s=0.1 if tui else None),
    )
    if tui:
        from ..tui import run_listen_app

        code = run_listen_app(session)
        _show_summary(outputs, session.summary)
        return code

    calibration_shown = [-1.0]  # the last progress printed (s of speech)

    def on_event(event) -> None:
        if isinstance(event, PredictionMade) and stdout is not None and stdout.broken and not files:
            log.info("standard output was closed; stopping")  # its reader went away (`... | head`)
            session.request_stop()
        if isinstance(event, CalibrationProgress) and not args.quiet:
            heard = min(event.speech_s)
            if event.done:
                print(f"stream-ser: calibrated on {event.target_s:g} s of speech per channel at {event.end_s:.1f} s of "
                      "audio; predictions follow.", file=sys.stderr, flush=True)
            elif heard >= calibration_shown[0] + 5.0 or calibration_shown[0] < 0:
                calibration_shown[0] = heard
                heard_text = " / ".join(f"{s:g}" for s in event.speech_s)
                print(f"stream-ser: calibrating: {heard_text} of {event.target_s:g} s of speech heard (speak "
                      "naturally; no predictions yet)", file=sys.stderr, flush=True)
        if isinstance(event, SessionStarted) and not args.quiet:
            rates = event.device_sample_rates_hz or (event.device_sample_rate_hz,)
            rate_text = "/".join(f"{r}" for r in dict.fromkeys(rates))
            channels = ""
            if event.channel_ids != (0,):
                described = [
                    f"{cid}" if desc in (str(cid), f"channel {cid}") else f"{cid} = {desc}"
                    for cid, desc in zip(event.channel_ids, event.channel_descriptions or event.channel_ids)
                ]
                channels = f", channels {', '.join(described)} scored separately"
            print(
                printable(f"stream-ser: listening to {event.source_name} ({rate_text} Hz -> "
                          f"{event.sample_rate_hz} Hz{channels}), model {event.model_name} [{', '.join(event.labels)}], "
                          f"hop {event.hop_s:g} s, window {event.window_s:g} s. Ctrl-C to stop."),
                file=sys.stderr,
                flush=True,
            )

    with _Stop(on_stop=session.request_stop):
        ended = session.run(on_event)
    stats = ended.stats
    if ended.error:
        _error(ended.error)
    if not args.quiet or ended.error:
        extra = f", CSV {printable(args.csv)} ({stats.rows_written} rows)" if csv_sink else ""
        print(
            f"stream-ser: stopped after {stats.stream_s:.1f} s of audio ({ended.reason}): {stats.predictions} "
            f"predictions, {stats.overflows} input overflows, {stats.dropped_s:.2f} s of audio dropped{extra}",
            file=sys.stderr,
        )
    _show_summary(outputs, session.summary)
    return ended.exit_status


def _show_summary(outputs: Outputs, summary) -> None:
    """The session's call summary on stderr and in ``--summary-json`` (none if it never started)."""
    if summary is not None:
        outputs.add_summary(summary, show=True)

