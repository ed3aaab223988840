"""Hostile files, streams and terminals: one bad item never stops a batch, nothing hangs, the
terminal is safe.

A file name may hold any bytes (not UTF-8, control characters, longer than the file system
allows); an output may be a full disk, a named pipe or a closed pipe; an input may be a pipe, a
corrupt FLAC or a header with an absurd sample rate. Each fails with one line naming the item,
never a traceback, never a silent hang, and the rows written before the failure stay whole.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from conftest import TESS_CLIP, make_tiny_onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_ser.cli import main
from stream_ser.text import UNPRINTABLE, printable


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx")


def unprintable(text: str) -> bool:
    """Whether any line of ``text`` holds a character a terminal would act on."""
    return any(UNPRINTABLE.search(line) for line in text.splitlines())


def error_lines(err: str) -> list[str]:
    """The ``stream-ser: error:`` lines of stderr."""
    return [line for line in err.splitlines() if line.startswith("stream-ser: error: ")]


# --- one bad item never stops the batch ------------------------------------------------------


@pytest.mark.parametrize("name", [b"bad\xff.flac", b"x" * 300 + b".wav", b"\xc3(\xa0\xa1.flac"],
                         ids=["not-utf8", "too-long", "invalid-sequence"])
def test_a_file_name_that_cannot_be_used_is_one_error_line(tmp_path, capsys, tiny_model, name) -> None:
    bad = os.path.join(os.fsencode(tmp_path), name)
    try:
        Path(os.fsdecode(bad)).write_bytes(TESS_CLIP.read_bytes())
    except OSError:  # longer than the file system allows: the name alone is given
        pass
    code = main(["analyse", str(TESS_CLIP), os.fsdecode(bad), str(TESS_CLIP), "--model", str(tiny_model)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.count(f"{TESS_CLIP}: ") == 2  # the others were scored
    (line,) = error_lines(captured.err)
    assert printable(os.fsdecode(name)) in line and "Traceback" not in captured.err
    assert not unprintable(captured.err)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.binary(min_size=1, max_size=300).filter(lambda b: b"/" not in b and b"\0" not in b
                                                        and b not in (b".", b"..")))
def test_any_file_name_is_scored_or_one_error_line(tiny_model, name: bytes) -> None:
    import contextlib
    import io

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(os.fsencode(folder), name)
        try:
            Path(os.fsdecode(path)).write_bytes(TESS_CLIP.read_bytes())
        except OSError:
            pass
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["analyse", os.fsdecode(path), str(TESS_CLIP), "--model", str(tiny_model), "-q"])
    errors = error_lines(err.getvalue())
    assert code in (0, 1) and len(errors) == (code == 1)
    assert out.getvalue().count(f"{TESS_CLIP}: ") == 1
    assert not unprintable(err.getvalue()) and not unprintable(out.getvalue())
    assert len(out.getvalue().splitlines()) == 1 + (code == 0)  # no name forged a line
