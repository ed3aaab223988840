"""Hostile input fails safely: a model file's metadata and output, numeric options, output paths.

A model file is untrusted input: every field of its feature recipe is checked before any audio
(property-based: any value in any field is either refused with one line naming a field, or
gives a recipe that runs), and its output must be class probabilities. Numeric options have a
finite, documented range; outputs never overwrite an input or each other, and an appended file
never glues a new row onto an unfinished last line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import TESS_CLIP, make_tiny_onnx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stream_ser.cli import main
from stream_ser.features import (
    MAX_FRAMES,
    MAX_WINDOW_S,
    SAMPLE_RATE_RANGE_HZ,
    FeatureConfig,
    window_features,
)
from stream_ser.metadata import ModelMetadata, ModelMetadataError
from stream_ser.model import EmotionModel, ModelError

CFG = FeatureConfig()
FIELDS = tuple(CFG.to_dict())
LABELS = ("neutral", "happy", "sad")


def metadata_json(**feature_overrides) -> str:
    """Valid metadata for LABELS with some feature-recipe fields replaced (NaN and infinity are
    written as JSON's common extension, as a hostile exporter could)."""
    data = json.loads(ModelMetadata(LABELS, CFG).to_json())
    data["feature_config"].update(feature_overrides)
    return json.dumps(data)


def one_error_line(capsys) -> str:
    """stderr of the last command: exactly one line, ``stream-ser: error: ...``."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stream-ser: error: "), err
    return lines[0]


# --- the feature recipe in a model's metadata (property-based) ------------------------------

JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-100_000, 100_000),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-100.0, 100.0),
    st.sampled_from([0, 1, -1, 0.0, 1e-30, 1e30, 2**63, "hann", "hamming", "kaiser", "", "slaney"]),
    st.text(max_size=12),
    st.lists(st.integers(0, 10), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


KINDS = {f.name: f.type for f in dataclasses.fields(FeatureConfig)}  # "int", "float", "str | None", ...


def has_type(value, kind: str) -> bool:
    """Whether a JSON value has a recipe field's declared type (an integer counts as a float)."""
    if kind == "bool" or isinstance(value, bool):
        return kind == "bool" and isinstance(value, bool)
    return {"int": isinstance(value, int), "float": isinstance(value, (int, float)), "str": isinstance(value, str),
            "str | None": value is None or isinstance(value, str)}[kind]


def check_usable(cfg: FeatureConfig) -> None:
    """What an accepted recipe guarantees: finite bounded numbers, a shape within bounds, and a
    recipe that runs: digital silence is never speech, a loud tone gives finite features."""
    for name, value in cfg.to_dict().items():
        if isinstance(value, float):
            assert math.isfinite(value), name
    low, high = SAMPLE_RATE_RANGE_HZ
    assert low <= cfg.sample_rate_hz <= high and 0 < cfg.window_s <= MAX_WINDOW_S
    assert 1 <= cfg.hop_samples <= cfg.window_samples and cfg.n_fft <= cfg.window_samples
    assert 1 <= cfg.n_frames <= MAX_FRAMES and 1 <= cfg.n_mels <= cfg.n_fft // 2 + 1
    assert 0 <= cfg.fmin_hz < cfg.fmax_hz <= cfg.sample_rate_hz / 2
    assert window_features(np.zeros(cfg.window_samples, np.float32), cfg) is None
    t = np.arange(cfg.window_samples) / cfg.sample_rate_hz
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    with np.errstate(all="ignore"):
        feats = window_features(tone, cfg)
    if feats is not None:
        assert feats.shape == cfg.input_shape and np.all(np.isfinite(feats))


@pytest.mark.filterwarnings("ignore:Empty filters")  # librosa: more bands than FFT bins in the range
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_any_value_in_any_recipe_field_is_refused_in_one_line_or_runs(field: str, value) -> None:
    text = metadata_json(**{field: value})
    try:
        meta = ModelMetadata.from_json(text)
    except ModelMetadataError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 400
        assert any(f"{name} = " in message for name in FIELDS) or "recipe version" in message, message
        if field != "version" and not has_type(value, KINDS[field]):
            assert f"{field} = " in message, message  # a value of the wrong type is named
        event("refused")
        return
    event("accepted")
    check_usable(meta.feature_config)


#: Values around the valid ranges of the fields that bound each other.
NEAR_RANGE = {
    "sample_rate_hz": st.sampled_from([8000, 16000, 22050, 44100, 48000, 96000]) | st.integers(4000, 100_000),
    "window_s": st.floats(0.01, 12.0),
    "hop_s": st.floats(1e-5, 4.0),
    "n_fft": st.sampled_from([16, 64, 256, 512, 1024, 2048, 4096]) | st.integers(8, 5000),
    "win_length": st.integers(8, 4200),
    "hop_length": st.integers(1, 1500),
    "n_mels": st.integers(1, 300),
    "fmin_hz": st.floats(0.0, 10_000.0),
    "fmax_hz": st.floats(100.0, 50_000.0),
    "level_frame_length": st.integers(1, 5000),
    "level_hop_length": st.integers(1, 2000),
    "gate_min_speech_s": st.floats(0.0, 4.0),
    "gate_dbfs": st.floats(-130.0, 5.0),
    "trim_dbfs": st.floats(-130.0, 5.0),
    "peak_dbfs": st.floats(-70.0, 5.0),
    "power": st.floats(0.0, 5.0),
    "center": st.booleans(),
    "window": st.sampled_from(["hann", "hamming", "blackman", "bartlett", "boxcar"]),
}


@pytest.mark.filterwarnings("ignore:Empty filters")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.fixed_dictionaries({}, optional=NEAR_RANGE))
def test_combinations_of_fields_are_refused_or_run(changes: dict) -> None:
    """Fields that bound each other (window and FFT, bands and Nyquist, level frames and gate)."""
    try:
        meta = ModelMetadata.from_json(metadata_json(**changes))
    except ModelMetadataError as exc:
        assert "\n" not in str(exc) and any(f"{name} = " in str(exc) for name in FIELDS), str(exc)
        event("refused")
        return
    event("accepted")
    check_usable(meta.feature_config)


OUT_OF_RANGE = st.one_of(
    st.tuples(st.just("hop_length"), st.integers(max_value=0)),
    st.tuples(st.just("hop_length"), st.integers(min_value=401)),  # above win_length
    st.tuples(st.just("n_mels"), st.integers(max_value=0)),
    st.tuples(st.just("n_mels"), st.integers(min_value=258)),  # above n_fft // 2 + 1
    st.tuples(st.just("window"), st.text().filter(lambda s: s not in ("hann", "hamming", "blackman", "bartlett", "boxcar"))),
    st.tuples(st.just("window_s"), st.floats(min_value=MAX_WINDOW_S, exclude_min=True)),
    st.tuples(st.just("window_s"), st.floats(max_value=0.0)),
    st.tuples(st.just("sample_rate_hz"), st.integers(max_value=SAMPLE_RATE_RANGE_HZ[0] - 1)),
    st.tuples(st.just("sample_rate_hz"), st.integers(min_value=SAMPLE_RATE_RANGE_HZ[1] + 1)),
    st.tuples(st.sampled_from(["gate_dbfs", "trim_dbfs", "peak_dbfs", "window_s", "hop_s", "fmin_hz", "fmax_hz",
                               "power", "amin", "gate_min_speech_s"]),
              st.sampled_from([math.nan, math.inf, -math.inf])),
    st.tuples(st.just("gate_dbfs"), st.floats(min_value=0.0, exclude_min=True, allow_infinity=False)),
    st.tuples(st.just("gate_dbfs"), st.floats(max_value=-120.0, exclude_max=True, allow_infinity=False)),
    st.tuples(st.just("gate_min_speech_s"), st.floats(max_value=0.0, allow_infinity=False)),
    st.tuples(st.just("gate_min_speech_s"), st.floats(min_value=2.99, allow_infinity=False)),
    st.tuples(st.just("fmax_hz"), st.floats(min_value=8000.0, exclude_min=True, allow_infinity=False)),
    st.tuples(st.just("fmin_hz"), st.floats(min_value=8000.0, allow_infinity=False)),
    st.tuples(st.just("fmin_hz"), st.floats(max_value=0.0, exclude_max=True, allow_infinity=False)),
    st.tuples(st.just("hop_s"), st.floats(min_value=3.0001, allow_infinity=False)),
    st.tuples(st.just("hop_s"), st.floats(max_value=1 / 32000, allow_infinity=False)),  # below one sample
    st.tuples(st.just("power"), st.floats(max_value=0.0, allow_infinity=False)),
    st.tuples(st.just("amin"), st.floats(max_value=0.0, allow_infinity=False)),
    st.tuples(st.just("mel_norm"), st.text().filter(lambda s: s != "slaney")),
    st.tuples(st.sampled_from(["level_hop_length", "level_frame_length", "win_length", "n_fft"]),
              st.integers(max_value=0)),
    st.tuples(st.sampled_from(["n_fft", "win_length", "hop_length", "n_mels"]),
              st.sampled_from([40.0, "40", None, True, [40]])),
    st.tuples(st.sampled_from(["center", "remove_dc", "mel_htk"]), st.sampled_from([0, 1, "true", None])),
)


@settings(max_examples=300, deadline=None)
@given(bad=OUT_OF_RANGE)
def test_a_field_out_of_range_is_named(bad: tuple) -> None:
    field, value = bad
    with pytest.raises(ModelMetadataError) as info:
        ModelMetadata.from_json(metadata_json(**{field: value}))
    message = str(info.value)
    assert message.startswith("metadata 'feature_config': ") and f"{field} = " in message, message
    assert "\n" not in message and len(message) < 400


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")),
                      st.recursive(JSON_VALUES, lambda inner: st.lists(inner, max_size=3)
                                   | st.dictionaries(st.text(max_size=8), inner, max_size=4)).map(json.dumps)))
def test_any_metadata_text_is_refused_or_parsed(text: str) -> None:
    try:
        ModelMetadata.from_json(text)
    except ModelMetadataError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"format": 1' + "0" * 5000 + "}"],
                         ids=["nested-too-deep", "huge-integer"])
def test_pathological_json_is_a_metadata_error(text: str) -> None:
    with pytest.raises(ModelMetadataError, match="not valid JSON"):
        ModelMetadata.from_json(text)


@pytest.mark.parametrize(
    "field,value",
    [("hop_length", 0), ("window", "no-such-window"), ("window_s", 1e5), ("gate_dbfs", math.nan), ("n_mels", 0),
     ("fmin_hz", 9000.0), ("sample_rate_hz", 1), ("gate_min_speech_s", 0.0)],
)
def test_cli_refuses_a_bad_recipe_before_any_audio(tmp_path, capsys, field, value) -> None:
    model = make_tiny_onnx(tmp_path / "hostile.onnx", metadata=metadata_json(**{field: value}))
    out = tmp_path / "t.csv"
    assert main(["analyse", str(TESS_CLIP), "--model", str(model), "--csv", str(out)]) == 2
    line = one_error_line(capsys)
    assert "hostile.onnx" in line and f"{field} = " in line
    assert not out.exists()
    assert main(["info", "--model", str(model)]) == 2
    assert f"{field} = " in one_error_line(capsys)


# --- the model's output ----------------------------------------------------------------------


def make_constant_onnx(path: Path, row: list[float], n_outputs: int | None = None) -> Path:
    """A model with valid metadata for LABELS whose output is ``row`` for every window (its graph
    declares ``(batch, 3)`` whatever ``row``'s length)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m, f = CFG.input_shape
    n = len(row) if n_outputs is None else n_outputs
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["log_mel", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "W"], ["zeros"]),
            helper.make_node("Add", ["zeros", "C"], ["probabilities"]),
        ],
        "constant",
        [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, ["batch", m, f, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=[
            numpy_helper.from_array(np.zeros((m, n), np.float32), "W"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(np.array(row, np.float32), "C"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key = "stream_ser"
    entry.value = ModelMetadata(LABELS, CFG).to_json()
    onnx.save(model, str(path))
    return path


BAD_OUTPUTS = {
    "nan": ([math.nan, 0.5, 0.5], "NaN"),
    "inf": ([math.inf, 0.0, 0.0], "infinite"),
    "negative": ([-0.5, 1.0, 0.5], "negative"),
    "sum-below-1": ([0.2, 0.2, 0.2], "summing to 0.6"),
    "logits": ([2.0, -1.0, 0.5], "negative"),
    "sum-above-1": ([0.5, 0.5, 0.5], "summing to 1.5"),
}


@pytest.mark.parametrize("name", BAD_OUTPUTS)
def test_output_that_is_not_probabilities_is_a_model_error(tmp_path, name) -> None:
    row, what = BAD_OUTPUTS[name]
    model = EmotionModel(make_constant_onnx(tmp_path / f"bad-{name}.onnx", row))
    x = np.zeros((2, *CFG.input_shape), np.float32)
    for batch in (x, x[0]):
        with pytest.raises(ModelError) as info:
            model.predict(batch)
        assert f"model bad-{name} output" in str(info.value) and what in str(info.value)
        assert "\n" not in str(info.value)


def test_probabilities_pass_and_another_shape_is_a_model_error(tmp_path) -> None:
    good = EmotionModel(make_constant_onnx(tmp_path / "good.onnx", [0.2, 0.3, 0.5]))
    p = good.predict(np.zeros((4, *CFG.input_shape), np.float32))
    assert p.shape == (4, 3) and np.allclose(p, [0.2, 0.3, 0.5])

    class Session:  # a graph whose output is not the shape it declares
        def __init__(self, out: np.ndarray) -> None:
            self.out = out

        def run(self, names, feeds):
            return [self.out]

    for out in (np.full((1, 4), 0.25, np.float32), np.full((2, 3), 1 / 3, np.float32), np.ones(3, np.float32)):
        good._session = Session(out)
        with pytest.raises(ModelError, match=r"model good output shape"):
            good.predict(np.zeros(CFG.input_shape, np.float32))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_analyse_with_a_nan_model_stops_with_one_line_and_writes_no_nan(tmp_path, capsys, jobs) -> None:
    model = make_constant_onnx(tmp_path / "nan-model.onnx", [math.nan, 0.5, 0.5])
    out = tmp_path / "t.jsonl"
    code = main(["analyse", str(TESS_CLIP), "--model", str(model), "--format", "jsonl", "--jsonl", str(out),
                 "--jobs", jobs])
    captured = capsys.readouterr()
    assert code == 2
    assert "NaN" not in captured.out and "NaN" not in out.read_text()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stream-ser: error: ") and "model nan-model output NaN" in lines[0]


def test_listen_with_a_nan_model_ends_with_the_error(tmp_path, capsys) -> None:
    model = make_constant_onnx(tmp_path / "nan-model.onnx", [math.nan, 0.5, 0.5])
    out = tmp_path / "t.csv"
    code = main(["listen", "--input", str(TESS_CLIP), "--fast", "--no-tui", "--model", str(model),
                 "--format", "jsonl", "--csv", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "NaN" not in captured.out and "nan" not in out.read_text().lower()
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("stream-ser: error: ")]
    assert len(errors) == 1 and "model nan-model output NaN" in errors[0] and "Traceback" not in captured.err


# --- numeric options -------------------------------------------------------------------------


def usage_error(argv: list[str], capsys) -> str:
    """Run ``stream-ser ARGV``, expecting a usage error: exit 2 and one line on stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:  # the parser's errors
        code = exc.code
    assert code == 2, argv
    return one_error_line(capsys)


LISTEN = ["listen", "--input", str(TESS_CLIP), "--fast", "--no-tui"]
ANALYSE = ["analyse", str(TESS_CLIP)]


@pytest.mark.parametrize(
    "argv,option,value",
    [(cmd, "--threads", v) for cmd in (ANALYSE, LISTEN, ["info"]) for v in ("5000", "0", "-1", "65", "1.5", "x", "9" * 5000)]
    + [(cmd, "--hop", v) for cmd in (ANALYSE, LISTEN) for v in ("0", "-1", "inf", "nan", "1e400", "abc", "")]
    + [(LISTEN, "--duration", v) for v in ("inf", "0", "-3", "nan", "604801", "1e309")]
    + [(LISTEN, "--calibrate", v) for v in ("inf", "0", "nan", "3601")]
    + [(ANALYSE, "--jobs", v) for v in ("0", "3", "2.0", "inf")]
    + [(["plot", "t.csv"], "--max-panels", v) for v in ("0", "-1", "101", "1e9", "inf")],
)
def test_numeric_option_out_of_range_is_one_usage_line(tmp_path, capsys, monkeypatch, argv, option, value) -> None:
    monkeypatch.chdir(tmp_path)
    line = usage_error([*argv, option, value], capsys)
    assert line.startswith((f"stream-ser: error: {option}: ", f"stream-ser: error: -j/{option}: "))
    assert "invalid" not in line  # argparse's "invalid <type name> value"
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("argv", [ANALYSE, LISTEN])
def test_hop_longer_than_the_model_window_is_one_usage_line(capsys, argv) -> None:
    line = usage_error([*argv, "--hop", "5"], capsys)
    assert line.startswith("stream-ser: error: --hop: ") and "window (3.0 s)" in line


def test_numeric_options_document_their_range(capsys) -> None:
    texts = {}
    for command in ("analyse", "listen", "plot", "info"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        texts[command] = " ".join(capsys.readouterr().out.split())
    assert "onnxruntime threads, 1 to 64" in texts["analyse"] and "1 to 64" in texts["info"]
    assert "from one sample to the model's window" in texts["analyse"] and "from one sample" in texts["listen"]
    assert "at most 604800" in texts["listen"] and "at most 3600" in texts["listen"]
    assert "1 to 100" in texts["plot"]


def test_the_library_refuses_the_same_numbers(tiny_model_path) -> None:
    from stream_ser.engine import Engine
    from stream_ser.session import SessionOptions

    for threads in (0, -1, 5000, 1.5, True):
        with pytest.raises(ValueError, match="num_threads"):
            EmotionModel(tiny_model_path, num_threads=threads)
    model = EmotionModel(tiny_model_path)
    for hop in (math.inf, -math.inf, math.nan, 0.0, 3.5):
        with pytest.raises(ValueError, match="hop must be between"):
            Engine(model, hop_s=hop)
    for duration in (math.inf, math.nan, 0.0, -1.0):
        with pytest.raises(ValueError, match="duration_s"):
            SessionOptions(duration_s=duration)
    with pytest.raises(ValueError, match="calibrate_s"):
        SessionOptions(calibrate_s=math.inf)


# --- output paths ----------------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path) -> Path:
    """A copy of a real clip (an input that a bad output path could destroy)."""
    path = tmp_path / "in.flac"
    path.write_bytes(TESS_CLIP.read_bytes())
    return path


@pytest.mark.parametrize(
    "outputs",
    [["--csv", "{in}", "--force"], ["--jsonl", "{in}", "--append"], ["--jsonl", "{in}", "--force"],
     ["--summary-json", "{in}", "--force"], ["--csv", "{link}", "--force"], ["--csv", "{hard}", "--force"],
     ["--csv", "{dir}/../in.flac", "--force"], ["--csv", "{model}", "--model", "{model}", "--force"]],
    ids=["csv", "jsonl-append", "jsonl", "summary", "symlink", "hard-link", "dotdot", "model"],
)
def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path, clip, capsys, outputs) -> None:
    model = make_tiny_onnx(tmp_path / "m.onnx")
    (tmp_path / "link.flac").symlink_to(clip)
    (tmp_path / "hard.flac").hardlink_to(clip)
    (tmp_path / "dir").mkdir()
    names = {"in": clip, "link": tmp_path / "link.flac", "hard": tmp_path / "hard.flac", "dir": tmp_path / "dir",
             "model": model}
    before = {p: p.read_bytes() for p in (clip, model)}
    argv = [a.format(**names) for a in outputs]
    for command in (["analyse", str(clip)], ["listen", "--input", str(clip), "--fast", "--no-tui"]):
        line = usage_error([*command, *argv], capsys)
        assert "an output must not overwrite an input" in line
        assert {p: p.read_bytes() for p in (clip, model)} == before


@pytest.mark.parametrize(
    "options",
    [["--csv", "o", "--jsonl", "o"], ["--csv", "o", "--summary-json", "o"], ["--jsonl", "o", "--summary-json", "o"],
     ["--csv", "o", "--jsonl", "./sub/../o"], ["--csv", "o", "--jsonl", "link-to-o"]],
    ids=["csv-jsonl", "csv-summary", "jsonl-summary", "dotdot", "symlink"],
)
def test_two_outputs_naming_one_file_are_refused(tmp_path, clip, capsys, monkeypatch, options) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link-to-o").symlink_to(tmp_path / "o")  # dangling until o is written
    line = usage_error(["analyse", str(clip), *options], capsys)
    assert "are the same file" in line
    assert not (tmp_path / "o").exists()
    (tmp_path / "o").write_text("kept\n")
    (tmp_path / "hard-o").hardlink_to(tmp_path / "o")
    assert "are the same file" in usage_error(["analyse", str(clip), "--csv", "o", "--jsonl", "hard-o", "--force"],
                                              capsys)
    assert (tmp_path / "o").read_text() == "kept\n"


def test_outputs_may_share_a_device_file(clip, capsys) -> None:
    assert main(["analyse", str(clip), "--csv", "/dev/null", "--jsonl", "/dev/null", "-q"]) == 0


@pytest.mark.parametrize("tail", ["", "\n", "in.flac,0,0.000,0.5", 'in.flac,0,0.000,0.500,1,"ang', '"a\nb",0,0.000'],
                         ids=["header-only", "blank-line", "cut-row", "cut-in-quotes", "cut-after-quoted-newline"])
def test_append_to_a_csv_with_an_unfinished_line_starts_a_fresh_line(tmp_path, clip, capsys, tail) -> None:
    import csv

    full = tmp_path / "full.csv"
    assert main(["analyse", str(clip), "--csv", str(full), "-q"]) == 0
    rows = full.read_text().splitlines(keepends=True)
    header, data = rows[0].rstrip("\n"), rows[1:]
    cut = tmp_path / "cut.csv"
    cut.write_text(header if tail == "" else header + "\n" + tail)  # a header without its newline, or a cut row
    assert main(["analyse", str(clip), "--csv", str(cut), "--append", "-q"]) == 0
    with open(cut, newline="") as f:
        parsed = list(csv.reader(f))
    assert parsed[0] == header.split(",")
    assert parsed[-len(data):] == list(csv.reader(data))  # every new row whole, none glued onto the fragment


@pytest.mark.parametrize("tail", ['{"type":"prediction","source":"in.fl', '{"type":"clip"}', ""],
                         ids=["cut-object", "no-final-newline", "finished"])
def test_append_to_jsonl_with_an_unfinished_line_starts_a_fresh_line(tmp_path, clip, capsys, tail) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text('{"type":"error","source":"x","message":"m"}\n' + tail)
    assert main(["analyse", str(clip), "--jsonl", str(out), "--append", "-q"]) == 0
    lines = out.read_text().split("\n")
    assert lines[0].startswith('{"type":"error"') and lines[-1] == ""
    if tail:
        assert lines[1] == tail  # the fragment keeps its own line
    new = lines[1 + bool(tail) : -1]
    assert new and json.loads(new[-1])["type"] == "clip"
    assert all(json.loads(x)["type"] in ("prediction", "clip") for x in new)  # every new line whole


def test_append_to_a_file_that_is_not_a_timeline_csv_is_refused(tmp_path, clip, capsys) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(bytes(range(256)) * 100)
    assert "not a timeline CSV" in usage_error(["analyse", str(clip), "--csv", str(other), "--append"], capsys)
    assert other.read_bytes() == bytes(range(256)) * 100


def test_plot_output_without_a_suffix_is_written_under_that_name(tmp_path, clip, capsys) -> None:
    pytest.importorskip("matplotlib")
    timeline = tmp_path / "t.csv"
    assert main(["analyse", str(clip), "--csv", str(timeline), "-q"]) == 0
    name = tmp_path / "NAME"
    assert main(["plot", str(timeline), "-o", str(name)]) == 0
    assert capsys.readouterr().err.strip() == f"stream-ser: wrote {name}"
    assert name.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "NAME.png").exists()
    (tmp_path / "NAME.png").write_text("precious")
    name.write_text("precious too")
    assert main(["plot", str(timeline), "-o", str(name)]) == 2  # exists: refused without --force
    assert "already exists" in one_error_line(capsys)
    assert name.read_text() == "precious too" and (tmp_path / "NAME.png").read_text() == "precious"
    assert main(["plot", str(timeline), "-o", str(name), "--force", "-q"]) == 0
    assert name.read_bytes()[:4] == b"\x89PNG" and (tmp_path / "NAME.png").read_text() == "precious"


def test_plot_never_overwrites_its_timeline(tmp_path, clip, capsys) -> None:
    timeline = tmp_path / "t.png"  # a timeline CSV with an image's name: the default output is itself
    assert main(["analyse", str(clip), "--csv", str(timeline), "-q"]) == 0
    before = timeline.read_bytes()
    for extra in ([], ["-o", str(timeline)], ["-o", str(tmp_path / "." / "t.png")]):
        assert "an output must not overwrite an input" in usage_error(["plot", str(timeline), *extra, "--force"], capsys)
    assert timeline.read_bytes() == before
