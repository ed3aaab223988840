"""What the command line tells its user (stream_ser.cli): ``--help`` with examples, the progress
bar, log levels (``--quiet``, ``--verbose``), one-line errors and exit statuses."""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP, read_pty

from stream_ser import cli
from stream_ser.cli import analyse as cli_analyse
from stream_ser.cli import build_parser, main

COMMANDS = ("listen", "analyse", "batch", "plot", "devices", "info")


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    logging.getLogger("stream_ser").setLevel(logging.NOTSET)


def console_cmd() -> list[str]:
    exe = shutil.which("stream-ser")
    return [exe] if exe else [sys.executable, "-m", "stream_ser"]


def test_every_command_has_help_with_examples() -> None:
    for command in COMMANDS:
        res = subprocess.run(console_cmd() + [command, "--help"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "examples:" in res.stdout and f"stream-ser {command}" in res.stdout.split("examples:")[1]
    top = subprocess.run(console_cmd() + ["--help"], capture_output=True, text=True, timeout=60).stdout
    for command in COMMANDS:
        assert command in top
    assert "--format jsonl" in top and "stream-ser plot" in top


def test_progress_bar_on_a_terminal(monkeypatch, capsys) -> None:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=140, soft_wrap=True)
    monkeypatch.setattr(cli_analyse, "_progress_console", lambda: console)
    assert main(["analyse", str(ANGRY_CLIP), str(HAPPY_CLIP), str(TESS_CLIP)]) == 0
    drawn = buf.getvalue()
    assert "files" in drawn and "s audio" in drawn and "x real time" in drawn
    assert "3/3 files" in drawn
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 3  # the summaries still reach stdout
    assert "analysed 3 of 3 file(s)" in captured.err and "real time" in captured.err


def test_no_progress_when_quiet_or_not_a_terminal(monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(cli_analyse, "_progress_console", lambda: calls.append(1) or None)
    assert main(["analyse", str(TESS_CLIP)]) == 0
    assert calls == [1] and capsys.readouterr().err == ""  # stderr not a terminal: nothing on it
    assert main(["analyse", str(TESS_CLIP), "-q"]) == 0
    assert calls == [1]  # --quiet does not even ask for a console
    assert cli_analyse._progress_console() is None  # pytest's captured stderr is not a terminal


def test_verbose_logs_and_quiet_silences(capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    assert main(["-v", "analyse", str(TESS_CLIP)]) == 0
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name.startswith("stream_ser")]
    assert any(m.startswith("model ") for m in infos) and any("analysed 1 of 1 file(s)" in m for m in infos)
    caplog.clear()
    assert main(["analyse", "-q", str(TESS_CLIP), str(TESS_CLIP) + ".missing"]) == 1
    assert not [r for r in caplog.records if r.levelno < logging.ERROR and r.name.startswith("stream_ser")]
    assert "no such file" in capsys.readouterr().err  # errors are never hidden


def test_console_script_logs_to_stderr() -> None:
    res = subprocess.run(console_cmd() + ["analyse", str(TESS_CLIP), "-v"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "stream-ser: INFO: model " in res.stderr
    res = subprocess.run(console_cmd() + ["-q", "analyse", str(TESS_CLIP)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stderr == "" and res.stdout.startswith(f"{TESS_CLIP}: ")


def test_verbose_and_quiet_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["analyse", str(TESS_CLIP), "-v", "-q"])
    assert exc.value.code == 2 and "exclude each other" in capsys.readouterr().err


def test_options_work_before_and_after_the_command() -> None:
    parser = build_parser()
    for argv in (["-q", "analyse", "x.wav"], ["analyse", "-q", "x.wav"], ["analyse", "x.wav", "--quiet"]):
        args = parser.parse_args(argv)
        assert args.quiet is True and args.verbose == 0
    assert parser.parse_args(["-v", "analyse", "x.wav"]).verbose == 1
    assert parser.parse_args(["analyse", "-vv", "x.wav"]).verbose == 2
    assert parser.parse_args(["devices", "-v"]).verbose == 1
    assert parser.parse_args(["plot", "t.csv", "-q"]).quiet is True
    assert parser.parse_args(["analyse", "x.wav"]).format == "lines"
    with pytest.raises(SystemExit):
        parser.parse_args(["analyse", "x.wav", "--format", "xml"])


def test_unexpected_errors_have_no_traceback_unless_verbose(monkeypatch, capsys) -> None:
    def boom(args):
        raise ZeroDivisionError("something broke")

    parser = build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "info", boom))
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert "unexpected error: ZeroDivisionError: something broke" in err and "--verbose" in err
    assert "Traceback" not in err
    with pytest.raises(ZeroDivisionError):
        main(["info", "-v"])


def test_interrupt_while_starting_is_exit_130(monkeypatch, capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    parser = build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "info", interrupted))
    assert main(["info"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_bad_hop_is_a_usage_error(capsys) -> None:
    assert main(["analyse", str(TESS_CLIP), "--hop", "10"]) == 2
    err = capsys.readouterr().err
    assert "--hop" in err and "Traceback" not in err


def _with_func(parser, command: str, func):
    """The parser with ``command`` dispatching to ``func``."""
    for action in parser._subparsers._group_actions:  # argparse keeps sub-parsers here
        action.choices[command].set_defaults(func=func)
    return parser


# --------------------------------------------------------------------------------------------
# No subcommand, no input device, numeric options, help texts


def test_bare_command_prints_the_help() -> None:
    """``stream-ser`` alone prints what ``stream-ser --help`` prints, on stdout, status 0."""
    bare = subprocess.run(console_cmd(), capture_output=True, text=True, timeout=60)
    helped = subprocess.run(console_cmd() + ["--help"], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and bare.stderr == ""
    assert bare.stdout == helped.stdout and bare.stdout.startswith("usage: stream-ser")
    assert all(command in bare.stdout for command in COMMANDS)


def _no_devices(monkeypatch) -> None:
    """This process sees no input device, as on a machine without a sound card."""
    import stream_ser.audio.devices

    monkeypatch.setattr(stream_ser.audio.devices, "list_input_devices", lambda include_pulse_sources=True: [])


def _is_no_device_line(text: str) -> bool:
    lines = text.strip().splitlines()
    return (len(lines) == 1 and lines[0] == f"stream-ser: error: {cli.NO_INPUT_DEVICE}"
            and "--demo" in lines[0] and "--input FILE" in lines[0])


def test_listen_and_devices_without_a_device_say_so_in_one_line(monkeypatch, tmp_path, capsys) -> None:
    _no_devices(monkeypatch)
    out = tmp_path / "t.csv"
    assert main(["listen", "--csv", str(out)]) == 1
    captured = capsys.readouterr()
    assert _is_no_device_line(captured.err) and captured.out == ""
    assert not out.exists()  # refused before any output was opened
    assert main(["devices"]) == 1
    captured = capsys.readouterr()
    assert _is_no_device_line(captured.err) and captured.out == ""
    # a replay needs no device
    assert main(["listen", "--input", str(TESS_CLIP), "--fast", "-q"]) == 0
    assert main(["listen", "--demo", "--fast", "--duration", "1", "-q"]) == 0


def _run_in_terminal(argv: list[str], timeout_s: float = 60.0) -> tuple[int, str]:
    """Run a command in a pseudo-terminal of 80x24 until it exits; its status and everything it
    wrote to the terminal."""
    import os
    import pty
    import time

    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    env.pop("PULSE_SERVER", None)
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(argv[0], argv, env)
    output = b""
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout_s:
            data = read_pty(fd)
            if data is None:
                break
            output += data
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_listen_on_a_terminal_without_a_device_never_opens_the_ui() -> None:
    """On a terminal (where ``listen`` would open its full-screen UI), with no input device: the
    one error line and status 1; the screen is never taken over."""
    script = ("import sys, stream_ser.audio.devices as s; s.list_input_devices = lambda include_pulse_sources=True: []; "
              "from stream_ser.cli import main; sys.exit(main(['listen']))")
    status, text = _run_in_terminal([sys.executable, "-c", script])
    assert status == 1, text
    assert "\x1b[?1049h" not in text  # the alternate screen of the UI
    assert _is_no_device_line(text.replace("\r\n", "\n")), text


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_listen_on_this_machine_without_a_device() -> None:
    """The real command, nothing replaced, on a machine without an input device (skipped where
    one is present)."""
    probe = "from stream_ser.audio import list_input_devices as d; print(len(d(include_pulse_sources=False)))"
    import os

    env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    if found.returncode != 0 or found.stdout.strip() != "0":
        pytest.skip(f"this machine has an input device (or PortAudio is missing): {found.stdout}{found.stderr}")
    status, text = _run_in_terminal(console_cmd() + ["listen"])
    assert status == 1 and "\x1b[?1049h" not in text, text
    assert _is_no_device_line(text.replace("\r\n", "\n")), text


NUMERIC_ERRORS = [
    (["listen", "--hop", "0"], "--hop: must be a number greater than 0 and at most 10 s, got 0", "listen"),
    (["listen", "--hop", "abc"], "--hop: must be a number greater than 0 and at most 10 s, got 'abc'", "listen"),
    (["analyse", "x.wav", "--hop", "5"],
     "--hop: must be a number from one sample (6.25e-05 s) to the model's window (3.0 s), got 5", "analyse"),
    (["listen", "--input", str(TESS_CLIP), "--hop", "0.00001"],
     "--hop: must be a number from one sample (6.25e-05 s) to the model's window (3.0 s), got 1e-05", "listen"),
    (["analyse", "x.wav", "--jobs", "3"], "-j/--jobs: must be an integer from 1 to 2, got 3", "analyse"),
    (["analyse", "x.wav", "--jobs", "1.5"], "-j/--jobs: must be an integer from 1 to 2, got '1.5'", "analyse"),
    (["info", "--threads", "0"], "--threads: must be an integer from 1 to 64, got 0", "info"),
    (["listen", "--duration", "-1"], "--duration: must be a number greater than 0 and at most 604800 s, got -1",
     "listen"),
    (["listen", "--calibrate", "nan"], "--calibrate: must be a number greater than 0 and at most 3600 s, got nan",
     "listen"),
    (["plot", "t.csv", "--max-panels", "0"], "--max-panels: must be an integer from 1 to 100, got 0", "plot"),
]


@pytest.mark.parametrize("argv,message,command", NUMERIC_ERRORS)
def test_numeric_option_errors_share_one_style(argv, message, command) -> None:
    """Every numeric option's error, whether argparse or the model refuses the value, is one line:
    the option, what it must be, the value given, and where the help is; status 2."""
    res = subprocess.run(console_cmd() + argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"stream-ser: error: {message} (see `stream-ser {command} --help`)\n"


def test_demo_and_input_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["listen", "--demo", "--input", str(TESS_CLIP)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("stream-ser: error: --input and --demo exclude each other "
                                       "(see `stream-ser listen --help`)\n")
    assert main(["listen", "--demo", "--device", "1"]) == 2
    assert "--demo replays a file instead of a device" in capsys.readouterr().err


def test_help_states_what_is_decoded_and_no_speed_figures() -> None:
    """The formats in --help are the ones soundfile decodes here; --help quotes no speed-up
    figure (measurements live in benchmarks/README.md)."""
    import soundfile as sf

    texts = {c: subprocess.run(console_cmd() + [c, "--help"], capture_output=True, text=True, timeout=60,
                               env={**__import__("os").environ, "COLUMNS": "1000"}).stdout for c in COMMANDS}
    analyse = texts["analyse"]
    for fmt, shown in (("WAV", "WAV"), ("FLAC", "FLAC"), ("OGG", "Ogg"), ("MP3", "MP3")):
        assert (shown in analyse) == (fmt in sf.available_formats()), fmt
    assert f"libsndfile {sf.__libsndfile_version__}" in analyse and "not M4A/AAC" in analyse
    assert "8-192 kHz" in analyse and "any format" not in analyse.lower()
    assert "benchmarks/README.md" in analyse
    for command, text in texts.items():
        assert not re.search(r"\d(\.\d+)?x (the speed|faster)", text), command
    assert "--demo" in texts["listen"] and "--input FILE | --demo" in texts["listen"]
