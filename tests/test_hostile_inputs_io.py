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

import numpy as np
import pytest
from conftest import TESS_CLIP, make_tiny_onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_ser.cli import main
from stream_ser.text import UNPRINTABLE, printable
from stream_ser.types import Prediction


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


@pytest.mark.parametrize("option", ["--csv", "--jsonl", "--summary-json"])
@pytest.mark.parametrize("command", ["analyse", "listen"])
def test_a_full_disk_is_one_line_naming_the_output_and_status_2(capsys, tiny_model, option, command) -> None:
    argv = ["analyse", str(TESS_CLIP), str(TESS_CLIP)] if command == "analyse" else [
        "listen", "--input", str(TESS_CLIP), "--fast", "--no-tui"]
    code = main([*argv, option, "/dev/full", "--force", "--model", str(tiny_model), "-q"])
    captured = capsys.readouterr()
    assert code == 2
    (line,) = error_lines(captured.err)
    assert line == "stream-ser: error: /dev/full: cannot write (No space left on device)"
    assert "Traceback" not in captured.err and "unexpected" not in captured.err


@pytest.mark.parametrize("fmt", ["lines", "jsonl"])
def test_a_full_disk_on_standard_output_is_one_line_and_status_2(tiny_model, fmt) -> None:
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "stream_ser", "analyse", str(TESS_CLIP), "--model", str(tiny_model),
                               "--format", fmt, "-q"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["stream-ser: error: standard output: cannot write (No space left on device)"]


def run_with_file_size_limit(argv: list[str], limit_bytes: int) -> "subprocess.CompletedProcess[str]":
    """``stream-ser ARGV`` in a subprocess that may write files of at most ``limit_bytes``: a
    write past it fails as on a full disk (EFBIG, the signal ignored)."""
    import resource
    import signal
    import subprocess
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "stream_ser", *argv], preexec_fn=limit, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("option", ["--csv", "--jsonl"])
@pytest.mark.parametrize("command", ["analyse", "listen"])
def test_rows_written_before_a_full_disk_stay_whole(tmp_path, tiny_model, option, command) -> None:
    source = ["analyse", str(TESS_CLIP), str(TESS_CLIP), str(TESS_CLIP)] if command == "analyse" else [
        "listen", "--input", str(TESS_CLIP), "--fast", "--no-tui"]
    common = [*source, "--model", str(tiny_model), "-q"]
    full = tmp_path / "full.out"
    assert main([*common, option, str(full)]) == 0
    whole = full.read_bytes()
    cut = tmp_path / "cut.out"
    proc = run_with_file_size_limit([*common, option, str(cut)], len(whole) // 2 + 7)  # inside a row
    assert proc.returncode == 2, proc.stderr
    assert error_lines(proc.stderr) == [f"stream-ser: error: {cut}: cannot write (File too large)"]
    kept = cut.read_bytes()
    assert kept and kept.endswith(b"\n") and whole.startswith(kept)
    assert len(kept) < len(whole) // 2 + 7



@pytest.fixture
def corrupt_flac(tmp_path) -> Path:
    """A real FLAC whose header is valid and whose middle is garbage."""
    from conftest import ANGRY_CLIP

    data = bytearray(ANGRY_CLIP.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4000] = b"\x55" * 4000
    path = tmp_path / "corrupt.flac"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("command", ["analyse", "listen"])
def test_a_corrupt_flac_is_one_error_line_and_keeps_the_rows_before(tmp_path, capsys, tiny_model, corrupt_flac,
                                                                    command) -> None:
    import csv

    argv = ["analyse", str(corrupt_flac)] if command == "analyse" else [
        "listen", "--input", str(corrupt_flac), "--fast", "--no-tui"]
    out = tmp_path / "t.csv"
    code = main([*argv, "--csv", str(out), "--model", str(tiny_model), "-q"])
    captured = capsys.readouterr()
    assert code == 1
    (line,) = error_lines(captured.err)
    assert line.startswith(f"stream-ser: error: {corrupt_flac}: decoding failed after ")
    assert "Traceback" not in captured.err and "Exception" not in captured.err
    rows = list(csv.reader(out.open()))
    assert len(rows) >= 3 and all(len(r) == len(rows[0]) for r in rows)  # the rows before the fault, whole


# --- nothing hangs -----------------------------------------------------------------------------


def stream_ser(argv: list[str], timeout_s: float = 120, **kwargs) -> "subprocess.CompletedProcess[str]":
    """``stream-ser ARGV`` in a subprocess that must end within ``timeout_s`` (a hang fails)."""
    import subprocess
    import sys

    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "stream_ser", *argv], capture_output=True, text=True,
                          timeout=timeout_s, **kwargs)


@pytest.mark.parametrize("command", ["analyse", "listen"])
def test_a_named_pipe_as_input_is_refused_without_opening_it(tmp_path, tiny_model, command) -> None:
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    argv = ["analyse", str(fifo), str(TESS_CLIP)] if command == "analyse" else [
        "listen", "--input", str(fifo), "--fast", "--no-tui"]
    proc = stream_ser([*argv, "--model", str(tiny_model), "-q"], timeout_s=60)
    assert proc.returncode == 1
    (line,) = error_lines(proc.stderr)
    assert line.startswith(f"stream-ser: error: {fifo}: is a pipe, not a file")
    if command == "analyse":
        assert f"{TESS_CLIP}: " in proc.stdout


def test_standard_input_is_read_from_a_file_and_refused_from_a_pipe(tiny_model) -> None:
    import subprocess

    with TESS_CLIP.open("rb") as f:
        proc = stream_ser(["analyse", "/dev/stdin", "--model", str(tiny_model), "-q"], stdin=f)
    assert proc.returncode == 0 and proc.stdout.startswith("/dev/stdin: ")
    proc = stream_ser(["analyse", "/dev/stdin", "--model", str(tiny_model), "-q"], stdin=subprocess.PIPE,
                      input=None)
    assert proc.returncode == 1
    assert error_lines(proc.stderr)[0].startswith("stream-ser: error: /dev/stdin: is a pipe, not a file")
    assert "Format not recognised" not in proc.stderr


@pytest.mark.parametrize("option", ["--csv", "--jsonl", "--summary-json"])
def test_a_named_pipe_as_output_is_written_while_read_and_refused_without_a_reader(tmp_path, tiny_model,
                                                                                   option) -> None:
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    argv = ["analyse", str(TESS_CLIP), "--model", str(tiny_model), "-q", option, str(fifo)]
    proc = stream_ser(argv, timeout_s=60)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [f"stream-ser: error: {fifo}: is a named pipe that no program is reading "
                                        "(start the reader first)"]
    import time

    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while True:
        proc = stream_ser(argv, timeout_s=60)
        if proc.returncode != 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the reader had not opened the pipe yet
    reader.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert received and received[-1]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.sampled_from([1, 2, 100, 4000, 7999, 8000, 192000, 192001, 384000, 2**31 - 1])
       | st.integers(1, 400_000))
def test_a_header_with_an_absurd_sample_rate_is_refused_in_one_line(tiny_model, rate: int) -> None:
    import contextlib
    import io

    import numpy as np
    import soundfile as sf

    from stream_ser.audio import NATIVE_SAMPLE_RATE_RANGE_HZ

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rate.wav"
        noise = np.random.default_rng(0).standard_normal(4000) * 0.1
        sf.write(path, noise, rate, subtype="PCM_16")  # 4000 frames: at 1 Hz, over an hour
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(["analyse", str(path), "--model", str(tiny_model), "-q"])
    low, high = NATIVE_SAMPLE_RATE_RANGE_HZ
    if low <= rate <= high:
        assert code == 0, err.getvalue()
    else:
        assert code == 1
        assert error_lines(err.getvalue()) == [
            f"stream-ser: error: {path}: sample rate {rate} Hz is outside the 8-192 kHz stream-ser accepts"]


def test_a_device_with_an_absurd_rate_is_refused(monkeypatch) -> None:
    from stream_ser import sources

    device = sources.InputDevice(3, "odd", "ALSA", 1, 1.0, True)
    with pytest.raises(sources.AudioSourceError, match=r"input device 3 \(odd\): sample rate 1 Hz is outside"):
        sources.MicrophoneSource(device, stream_factory=lambda **kw: None)


def closed_reader(argv: list[str], timeout_s: float = 60, read_first_line: bool = True,
                  python: str | None = None) -> tuple[int, str, float]:
    """Run ``stream-ser ARGV`` (or ``python -c PYTHON``), read its first line of standard output
    (or none), close the pipe as ``head -1`` does and wait: ``(status, stderr, seconds after
    closing)``."""
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-c", python] if python else [sys.executable, "-m", "stream_ser", *argv]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    if read_first_line:
        assert proc.stdout.readline()
    proc.stdout.close()
    t0 = time.monotonic()
    try:
        err = proc.stderr.read()  # until the process ends
        status = proc.wait(timeout=timeout_s)
    finally:
        proc.kill()
    return status, err.decode(errors="replace"), time.monotonic() - t0


@pytest.mark.parametrize("fmt", ["lines", "jsonl"])
def test_analyse_stops_when_the_reader_of_standard_output_goes_away(tiny_model, fmt) -> None:
    status, err, _ = closed_reader(["analyse", *[str(TESS_CLIP)] * 40, "--timeline", "--format", fmt,
                                    "--model", str(tiny_model), "-v"])
    assert status == 0 and "Traceback" not in err and "Broken pipe" not in err
    assert "standard output was closed; stopping" in err
    (done,) = [int(line.split("analysed ")[1].split(" ")[0]) for line in err.splitlines() if "analysed " in line]
    assert done < 40


def test_listen_stops_when_the_reader_of_standard_output_goes_away(tmp_path, tiny_model) -> None:
    import numpy as np
    import soundfile as sf

    long = tmp_path / "long.wav"
    sf.write(long, np.random.default_rng(0).standard_normal(16000 * 120) * 0.1, 16000)  # 2 minutes, paced
    status, err, seconds = closed_reader(["listen", "--input", str(long), "--no-tui", "--model", str(tiny_model)])
    assert status == 0 and "Traceback" not in err and "Broken pipe" not in err
    assert seconds < 30 and "(stopped)" in err


def test_info_and_devices_end_quietly_when_the_reader_goes_away(tiny_model) -> None:
    status, err, _ = closed_reader(["info", "--model", str(tiny_model)], read_first_line=False)
    assert (status, err) == (0, "")
    fake = ("import sys; from stream_ser.audio import devices as sources; from stream_ser.cli import main; "
            "sources.list_input_devices = lambda *a, **k: [sources.InputDevice(i, f'mic {i}', 'ALSA', 2, 48000.0, "
            "i == 0) for i in range(5000)]; sys.exit(main(['devices']))")
    status, err, _ = closed_reader([], python=fake)
    assert (status, err) == (0, "")


def test_analyse_memory_does_not_grow_with_the_number_of_windows(tmp_path, tiny_model) -> None:
    import contextlib
    import io
    import tracemalloc

    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    peaks = []
    for minutes in (1, 1, 4):  # the first run makes the one-time allocations (imports, caches)
        path = tmp_path / f"{minutes}.flac"
        sf.write(path, rng.standard_normal(16000 * 60 * minutes) * 0.2, 16000, subtype="PCM_16")
        tracemalloc.start()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # nothing printed per window
                assert main(["analyse", str(path), "--hop", "0.1", "--model", str(tiny_model), "-q"]) == 0
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # 1800 more windows; keeping each prediction costs about 0.7 kB, so 1.2 MB
    assert peaks[2] - peaks[1] < 300_000, peaks


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.one_of(st.none(), st.lists(st.floats(0, 1), min_size=3, max_size=3)), max_size=40))
def test_the_clip_result_accumulated_is_the_mean_over_speech_windows(rows) -> None:
    import numpy as np

    from stream_ser.engine import ClipAccumulator

    labels = ("a", "b", "c")
    clip = ClipAccumulator(labels)
    for i, r in enumerate(rows):
        speech = r is not None
        clip.add(Prediction(source="s", channel=0, start_s=i * 0.5, end_s=i * 0.5 + 3, is_speech=speech,
                            label="a" if speech else None, confidence=r[0] if speech else None,
                            probabilities=tuple(r) if speech else None, labels=labels))
    result = clip.result("s", 9.0)
    speech_rows = [r for r in rows if r is not None]
    assert (result.n_windows, result.n_speech_windows) == (len(rows), len(speech_rows))
    if speech_rows:
        assert np.allclose(result.mean_probabilities, np.mean(speech_rows, axis=0), rtol=1e-12, atol=1e-15)
    else:
        assert result.label is None


def write_long_timeline(path: Path, rows: int, labels=("neutral", "happy", "sad")) -> None:
    """A timeline CSV of ``rows`` hops of 0.5 s: speech with probabilities (0.2, 0.3, 0.5) except
    every tenth hop."""
    from stream_ser.sinks import csv_header

    lines = [",".join(csv_header(labels))]
    for i in range(rows):
        end = (i + 1) * 0.5
        if i % 10:
            lines.append(f"long.wav,0,{max(end - 3, 0):.3f},{end:.3f},1,sad,0.5000,0.2000,0.3000,0.5000,output")
        else:
            lines.append(f"long.wav,0,{max(end - 3, 0):.3f},{end:.3f},0,,,,,,output")
    path.write_text("\n".join(lines) + "\n")


def test_plot_reads_a_long_timeline_in_bounded_memory(tmp_path, capsys) -> None:
    import tracemalloc

    import numpy as np

    from stream_ser.plot import MAX_PLOT_POINTS, read_timeline_csv

    peaks = []
    for rows in (10_000, 100_000):  # 100,000 hops: 14 hours, 8 MB
        csv_path = tmp_path / f"{rows}.csv"
        write_long_timeline(csv_path, rows)
        tracemalloc.start()
        try:
            (tl,) = read_timeline_csv(csv_path, max_points=MAX_PLOT_POINTS)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert len(tl.end_s) <= MAX_PLOT_POINTS and tl.end_s[-1] == rows * 0.5 and tl.start_s[0] == 0.0
        assert np.all(np.diff(tl.end_s) > 0) and tl.speech.all()  # nine hops in ten are speech
        assert np.allclose(tl.probabilities, [0.2, 0.3, 0.5])
    assert peaks[1] < 2 * peaks[0] and peaks[1] < 10_000_000, peaks
    pytest.importorskip("matplotlib")
    assert main(["plot", str(csv_path), "-o", str(tmp_path / "long.png"), "-q"]) == 0
    assert (tmp_path / "long.png").stat().st_size > 1000


@settings(max_examples=50, deadline=None)
@given(ends=st.lists(st.floats(0, 1e6), min_size=1, max_size=200).map(sorted), points=st.integers(1, 20),
       speech=st.lists(st.booleans(), min_size=200, max_size=200))
def test_bucketed_timelines_keep_the_span_and_order(tmp_path_factory, ends, points, speech) -> None:
    import numpy as np

    from stream_ser.plot import read_timeline_csv
    from stream_ser.sinks import csv_header

    path = tmp_path_factory.mktemp("tl") / "t.csv"
    lines = [",".join(csv_header(("a", "b")))]
    for end, ok in zip(ends, speech):
        lines.append(f"s,0,{end:.3f},{end:.3f},1,a,0.7000,0.7000,0.3000,none" if ok else f"s,0,{end:.3f},{end:.3f},0,,,,,none")
    path.write_text("\n".join(lines) + "\n")
    exact = read_timeline_csv(path)
    bucketed = read_timeline_csv(path, max_points=points)
    assert len(exact) == len(bucketed) == 1
    tl = bucketed[0]
    assert len(tl.end_s) <= points and np.all(np.diff(tl.end_s) >= 0)
    assert tl.start_s[0] == exact[0].start_s[0] and tl.end_s[-1] == exact[0].end_s[-1]
    assert np.allclose(tl.probabilities[tl.speech], [0.7, 0.3])
    assert np.isnan(tl.probabilities[~tl.speech]).all()


# --- the terminal ----------------------------------------------------------------------------

HOSTILE = "evil\x1b[2J\x1b[31m\nstream-ser: error: forged\r\u202etxt.flac"


def test_names_never_reach_the_terminal_raw(tmp_path, capsys) -> None:
    labels = ("calm\x1b[2J", "loud\nforged", "sad")
    model = make_tiny_onnx(tmp_path / "m.onnx", labels=labels)
    clip = tmp_path / HOSTILE
    clip.write_bytes(TESS_CLIP.read_bytes())
    missing = tmp_path / ("gone" + HOSTILE)
    runs = [
        ["analyse", str(clip), str(missing), "--timeline", "--summary", "--model", str(model)],
        ["analyse", str(clip), "--channels", "1", "--channel-names", "a\x1bb", "--timeline", "--model", str(model)],
        ["listen", "--input", str(clip), "--fast", "--no-tui", "--csv", str(tmp_path / ("t\n.csv")), "--model",
         str(model)],
        ["info", "--model", str(model)],
        ["plot", str(tmp_path / ("t\n.csv")), "--source", "x\x1b", "-o", str(tmp_path / "p.png")],
    ]
    for argv in runs:
        main(argv)
        captured = capsys.readouterr()
        assert not unprintable(captured.out) and not unprintable(captured.err), argv
        assert "forged" not in "".join(line[:7] for line in (captured.out + captured.err).splitlines())
        assert not any(line.startswith("stream-ser: error: forged") for line in captured.err.splitlines())


def test_printable_escapes_as_python_writes_strings() -> None:
    assert printable("a\nb\tc\x1b[2J\x7f\x9b") == "a\\nb\\tc\\x1b[2J\\x7f\\x9b"
    assert printable(os.fsdecode(b"bad\xff.wav")) == "bad\\xff.wav"
    assert printable("\u202eevil") == "\\u202eevil"
    assert printable("Ünïcödé ok, 日本語, emoji 🎙") == "Ünïcödé ok, 日本語, emoji 🎙"


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_printable_output_is_one_harmless_line(text: str) -> None:
    out = printable(text)
    assert not UNPRINTABLE.search(out) and len(out.splitlines()) <= 1


def mp3_or_skip(path: Path) -> Path:
    """A 3 s noise MP3 written by libsndfile (skips where it cannot write MP3)."""
    import numpy as np
    import soundfile as sf

    try:
        sf.write(path, np.random.default_rng(0).standard_normal(48000) * 0.1, 16000, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError, RuntimeError) as exc:
        pytest.skip(f"libsndfile cannot write MP3 here ({exc})")
    return path


@pytest.mark.parametrize("kind", ["text", "random", "damaged"])
def test_no_library_chatter_for_a_bad_mp3(tmp_path, capfd, tiny_model, kind) -> None:
    path = tmp_path / f"{kind}.mp3"
    if kind == "text":
        path.write_text("hello, this is not audio at all\n")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(1).bytes(20000))
    else:
        data = bytearray(mp3_or_skip(path).read_bytes())
        data[2000:6000] = b"\xff" * 4000
        path.write_bytes(bytes(data))
    for argv in (["analyse", str(path)], ["listen", "--input", str(path), "--fast", "--no-tui"]):
        assert main([*argv, "--model", str(tiny_model), "-q"]) == 1
        err = capfd.readouterr().err
        assert len(error_lines(err)) == 1 and err.startswith(f"stream-ser: error: {path}: "), err
        assert "Note:" not in err and "libmpg123" not in err and "possibly a pipe" not in err
        if kind != "damaged":
            assert error_lines(err)[0] == f"stream-ser: error: {path}: cannot read audio (format not recognised)"


def test_a_good_mp3_is_scored_quietly(tmp_path, capfd, tiny_model) -> None:
    path = mp3_or_skip(tmp_path / "ok.mp3")
    assert main(["analyse", str(path), "--model", str(tiny_model), "-q"]) == 0
    captured = capfd.readouterr()
    assert captured.out.startswith(f"{path}: ") and captured.err == ""


@pytest.mark.parametrize("value", [1e38, -3e38, 1e20, float("inf"), float("nan")])
def test_extreme_float_samples_are_scored_without_warnings(tmp_path, capfd, tiny_model, value) -> None:
    import warnings

    import soundfile as sf

    samples = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1
    samples[8000:40000:3] = value
    path = tmp_path / "extreme.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for argv in (["analyse", str(path)], ["listen", "--input", str(path), "--fast", "--no-tui"]):
            assert main([*argv, "--model", str(tiny_model), "-q"]) == 0
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("entry", ["module", "console-script"])
def test_ctrl_c_while_starting_is_status_130_without_a_traceback(tmp_path, entry) -> None:
    import shutil
    import signal
    import subprocess
    import sys
    import time

    import soundfile as sf

    long = tmp_path / "long.wav"
    sf.write(long, np.random.default_rng(0).standard_normal(16000 * 60) * 0.1, 16000)
    script = shutil.which("stream-ser", path=os.path.dirname(sys.executable))
    if entry == "console-script" and script is None:
        pytest.skip("the stream-ser console script is not installed beside this Python")
    cmd = [script] if entry == "console-script" else [sys.executable, "-m", "stream_ser"]
    # from 0.1 s: within the first tens of milliseconds Python itself is still starting (its own
    # imports, the console script's first line), before any stream-ser code can run
    for delay_s in (0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0):
        # SIGINT at its default, as in a terminal: a shell that runs the tests as a background job
        # hands its children SIGINT ignored, and then Python and stream-ser rightly ignore Ctrl-C
        proc = subprocess.Popen([*cmd, "analyse", *[str(long)] * 100, "--jobs", "1"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        # -SIGINT: the signal came before Python set up its handler (a shell shows 130 too)
        assert proc.returncode in (130, -signal.SIGINT), (delay_s, proc.returncode, err)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay_s, err)
        assert len(err.splitlines()) <= 1, (delay_s, err)


@pytest.mark.parametrize("closed", [2, 1])
def test_a_closed_standard_stream_never_receives_errors_or_outputs(tmp_path, tiny_model, closed) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "t.csv"
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(b"ID3" + np.random.default_rng(2).bytes(5000))
    proc = subprocess.run([sys.executable, "-m", "stream_ser", "analyse", str(tmp_path / "missing.wav"), str(damaged),
                           str(TESS_CLIP), "--format", "jsonl", "--csv", str(out), "--model", str(tiny_model)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: os.close(closed))
    assert proc.returncode == 1
    if closed == 2:  # standard output holds JSON lines and nothing else
        records = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [r["type"] for r in records if r["type"] != "prediction"] == ["error", "error", "clip"]
    else:
        assert len(error_lines(proc.stderr)) == 2 and "Traceback" not in proc.stderr
    header, *rows = out.read_text().splitlines()
    assert header.startswith("source,channel,") and rows and all(r.startswith(f"{TESS_CLIP},") for r in rows)


# --- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize("home", ["writable", "unusable"])
def test_onnxruntime_writes_nothing_under_home_and_does_not_warn(tmp_path, tiny_model, home) -> None:
    import subprocess
    import sys

    folder = tmp_path / "home"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORT_DISABLE_TELEMETRY", "CI", "GITHUB_ACTIONS", "TF_BUILD", "JENKINS_URL")}
    env["HOME"] = str(folder) if home == "writable" else "/dev/null"  # a file: nothing can be made under it
    proc = subprocess.run([sys.executable, "-m", "stream_ser", "analyse", str(TESS_CLIP), "--model", str(tiny_model)],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert list(folder.rglob("*")) == []


def test_plot_and_model_refuse_a_named_pipe_without_blocking(tmp_path) -> None:
    """A FIFO with no writer as the plot's timeline or as --model: one line at once, never a hang
    (opening a FIFO for reading would block until a writer comes)."""
    import subprocess
    import sys

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args, what in ((["plot", str(fifo), "-o", str(tmp_path / "x.png")], "not a regular file"),
                       (["info", "--model", str(fifo)], "not a regular file")):
        done = subprocess.run([sys.executable, "-m", "stream_ser", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and what in done.stderr and len(done.stderr.strip().splitlines()) == 1
