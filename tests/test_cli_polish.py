"""Command-line polish: progress bar, --quiet/--verbose, help with examples, errors and exit codes."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import sys

import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP

from stream_ser import cli
from stream_ser.cli import build_parser, main

COMMANDS = ("listen", "analyse", "plot", "devices", "info")


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
    monkeypatch.setattr(cli, "_progress_console", lambda: console)
    assert main(["analyse", str(ANGRY_CLIP), str(HAPPY_CLIP), str(TESS_CLIP)]) == 0
    drawn = buf.getvalue()
    assert "files" in drawn and "s audio" in drawn and "x real time" in drawn
    assert "3/3 files" in drawn
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 3  # the summaries still reach stdout
    assert "analysed 3 of 3 file(s)" in captured.err and "real time" in captured.err


def test_no_progress_when_quiet_or_not_a_terminal(monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(cli, "_progress_console", lambda: calls.append(1) or None)
    assert main(["analyse", str(TESS_CLIP)]) == 0
    assert calls == [1] and capsys.readouterr().err == ""  # stderr not a terminal: nothing on it
    assert main(["analyse", str(TESS_CLIP), "-q"]) == 0
    assert calls == [1]  # --quiet does not even ask for a console
    assert cli._progress_console() is None  # pytest's captured stderr is not a terminal


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
