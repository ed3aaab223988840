"""``stream-ser info``, ``devices`` and ``plot``: the model, the input devices, a timeline image."""

from __future__ import annotations

import argparse
import logging
import sys

from ..adaptation import resolve_adapt
from ..text import printable
from .common import NO_INPUT_DEVICE, _error, _load_model, _plot_output

log = logging.getLogger("stream_ser")


def cmd_devices(args: argparse.Namespace) -> int:
    from ..audio.devices import list_input_devices

    devices = list_input_devices()
    if not devices:
        _error(NO_INPUT_DEVICE)
        return 1
    print(f"{'':2}{'index':>5}  {'channels':>8}  {'rate_hz':>8}  {'host API':12}  {'kind':8}  name")
    for d in devices:
        mark = "*" if d.is_default else " "
        kind = "monitor" if d.is_monitor else "input"
        name = d.name if d.pulse_source is None or d.pulse_source == d.name else f"{d.name}  [{d.pulse_source}]"
        print(printable(f"{mark:2}{d.display_index:>5}  {d.max_input_channels:>8}  {d.default_sample_rate_hz:>8.0f}  "
                        f"{d.hostapi[:12]:12}  {kind:8}  {name}"))
    print("(* = default input; monitor = what the computer plays, e.g. the other side of a call, from a "
          "monitor or loopback source; rate_hz = native (default) rate, resampled to 16 kHz)")
    print("choose with --device INDEX or --device 'name substring'; two devices at once: "
          "--device A --device B")
    if any(d.pulse_source for d in devices):
        print("(PulseAudio sources, index '-', are chosen by name and opened through ALSA's 'pulse' device)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    model = _load_model(args)
    print(f"model:    {printable(model.path)}")
    print(f"labels:   {printable(', '.join(model.labels))}")
    print(f"features: {json.dumps(model.feature_config.to_dict())}")
    norm = model.metadata.speaker_norm
    print("speaker normalisation: " + ("none" if norm is None else
          f"causal, per channel (running per-band statistics of the voice, prior weight {norm.prior_windows:g} windows)"))
    meta = model.metadata
    default = resolve_adapt("auto", meta.embedding_adaptation, meta.output_prior)
    emb = meta.embedding_adaptation
    print("embedding adaptation: " + ("not available (no embedding_adaptation in the model)" if emb is None else
          "available, the default (--adapt auto; --adapt output or none turns it off): the network's "
          f"{emb.dim}-value embedding ('{printable(emb.output)}') standardised with running statistics of each "
          f"channel's voice, prior weight {emb.prior_windows:g} windows, then "
          + (f"mapped onto the training voices' statistics and scored by the network's own dense layers "
             f"({emb.hidden} ReLU units, {emb.n_classes} classes)" if emb.hidden
             else f"a linear head of {emb.n_classes} classes")
          + f" (temperature {emb.temperature:g})"))
    prior = meta.output_prior
    how = "on by default (--adapt none turns it off)" if default == "output" else "with --adapt output"
    print("output adaptation: " + ("not available (no output prior in the model)" if prior is None else
          f"available, {how}: running per-class log-probability mean of each channel's voice, prior weight "
          f"{prior.prior_windows:g} windows"))
    from ..vad import DEFAULT_GATE, find_silero_model, gate_descriptions

    gates = gate_descriptions()
    print("speech gate: " + " or ".join(f"{g} (default)" if g == DEFAULT_GATE else g for g in gates)
          + ", chosen with --gate (docs/vad.md)")
    for g, text in gates.items():
        print(f"  {g}: {text}")
    print(f"training gate: {model.feature_config.speech_gate} (the gate the model's training windows passed)")
    try:
        vad_model = f"{printable(str(find_silero_model()))} (Silero VAD, MIT)"
    except FileNotFoundError:
        vad_model = "Silero VAD not found: --gate vad fails, --gate level works (reinstall stream-ser)"
    print(f"VAD model: {vad_model}")
    print(f"licence:  {printable(model_licence(model.metadata.provenance))}")
    print(f"provenance: {json.dumps(model.metadata.provenance, indent=2)}")
    return 0


#: Licences of the corpora a model may be trained on (each corpus's own documentation).
CORPUS_LICENCES = {
    "ravdess": "RAVDESS, CC BY-NC-SA 4.0",
    "tess": "TESS, CC BY-NC-ND 4.0",
    "nemo": "nEMO, CC BY-NC-SA 4.0",
    "crema-d": "CREMA-D, ODbL 1.0 / DbCL 1.0",
    "savee": "SAVEE, free for research use",
    "emodb": "EmoDB, see its distribution terms",
}


def model_licence(provenance: dict) -> str:
    """What ``stream-ser info`` says about a model's terms: the licences of the corpora its
    provenance says it was trained on (``data``), which the model inherits."""
    data = provenance.get("data")
    if not isinstance(data, list) or not data:
        return "not recorded in the model (check the licences of the data it was trained on)"
    named = [CORPUS_LICENCES.get(str(c), f"{c}: licence unknown to stream-ser") for c in data]
    terms = "; ".join(named)
    if any("NC" in n for n in named):
        return f"trained on {terms}: non-commercial use only, as its training data"
    return f"trained on {terms}: the model inherits these terms"


def cmd_plot(args: argparse.Namespace) -> int:
    from ..plot import MAX_PLOT_POINTS, plot_timelines, read_timeline_csv
    from ..sinks import OutputError

    timelines = read_timeline_csv(args.timeline, max_points=MAX_PLOT_POINTS)  # memory bounded by the pixels
    if args.source:
        timelines = [t for t in timelines if args.source in t.source]
        if not timelines:
            _error(f"{args.timeline}: no source matches {args.source!r}")
            return 1
    out = _plot_output(args)
    if out.exists() and not args.force:
        raise OutputError(f"{out}: already exists (use --force to replace it)")
    if len(timelines) > args.max_panels:
        print(
            f"stream-ser: {len(timelines)} panels in {printable(args.timeline)}; drawing the first {args.max_panels} "
            "(choose with --source, or raise --max-panels)",
            file=sys.stderr,
        )
    try:
        plot_timelines(timelines, out, title=args.title, max_panels=args.max_panels)
    except (OSError, ValueError) as exc:
        raise OutputError(f"{out}: cannot write the image ({exc})") from None
    log.info("wrote %s (%d panel(s))", out, min(len(timelines), args.max_panels))
    if not args.quiet:
        print(f"stream-ser: wrote {printable(out)}", file=sys.stderr)
    return 0

