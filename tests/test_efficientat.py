"""The Keras port of EfficientAT ``mn04_as`` (training.efficientat) against its reference ONNX.

The reference is ``shared/pretrained/efficientat-mn04/mn04_as.onnx`` (input ``mel`` float32
``(batch, 1, 128, time)``; outputs ``embedding``, ``logits``, ``frame_embedding``), exported from
the same PyTorch weights the port loads from ``mn04_as_mAP_432.npz`` (Schmid, Koutini & Widmer
2023, ICASSP). The pretrained folder sits beside ``shared/data`` (``tests/conftest.py``): tests
that need it skip when it is absent, or fail when ``STREAM_SER_REQUIRE_DATA`` is set.

Inputs: random log-mels, and a real one from a fixture clip through EfficientAT's front end
(:func:`training.transfer.efficientat_log_mel`, the reference the runtime's ``efficientat`` recipe
is calibrated against; here only a realistic input). Two lengths, 300 and 149 frames (odd, so the stride-2 layers see odd
sizes, where Keras ``'same'`` padding and PyTorch's symmetric padding disagree).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import ANGRY_CLIP, DATA_ENV, DEFAULT_DATA_DIR, REQUIRE_DATA_ENV

from training.efficientat import (
    EMBEDDING_DIM,
    N_AUDIOSET_CLASSES,
    REFERENCE_ONNX_FILE,
    WEIGHTS_FILE,
    WEIGHTS_SUBDIR,
    build_mn04,
    load_weights,
    make_divisible,
    parameter_count,
    scaled_blocks,
)
from training.transfer import efficientat_log_mel

#: Largest allowed |Keras - ONNX| per output (measured: about 6e-6 on the embeddings and 3e-5 on
#: the logits, whose values reach about 20).
ATOL = 1e-4
#: Trainable parameters of the checkpoint (shared/pretrained/README.md).
CHECKPOINT_PARAMETERS = 983_599
LENGTHS = (300, 149)


def _pretrained_dir() -> Path:
    """``shared/pretrained``: the sibling of the data folder ``tests/conftest.py`` uses."""
    override = os.environ.get(DATA_ENV, "").strip()
    data = Path(override).expanduser() if override else DEFAULT_DATA_DIR
    return data.resolve().parent / "pretrained"


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    """The ``efficientat-mn04`` folder (weights and reference ONNX); skips or fails if absent."""
    folder = _pretrained_dir() / WEIGHTS_SUBDIR
    if not ((folder / WEIGHTS_FILE).is_file() and (folder / REFERENCE_ONNX_FILE).is_file()):
        reason = (f"EfficientAT checkpoint not found in {folder} (the pretrained/ folder beside the data "
                  f"folder; set {DATA_ENV} to the shared/data folder)")
        if os.environ.get(REQUIRE_DATA_ENV, "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{reason}; {REQUIRE_DATA_ENV} is set, so missing data is an error", pytrace=False)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="module")
def port(checkpoint: Path):
    """The port with the AudioSet head and any input length, built and loaded once."""
    return build_mn04(n_mels=128, n_frames=None, weights=checkpoint / WEIGHTS_FILE, include_head=True)


@pytest.fixture(scope="module")
def reference(checkpoint: Path):
    """The reference ONNX on one onnxruntime thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(checkpoint / REFERENCE_ONNX_FILE), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def real_log_mel() -> np.ndarray:
    """A RAVDESS clip (4.37 s, angry) at 32 kHz through :func:`efficientat_log_mel`: (128, 438)."""
    from stream_ser.audio import load_audio

    audio = load_audio(ANGRY_CLIP, 32000)
    audio = audio / max(float(np.max(np.abs(audio))), 1e-9)
    return efficientat_log_mel(audio)


def _compare(port, reference, mel_nchw: np.ndarray) -> dict[str, float]:
    """Max |Keras - ONNX| per output for one ``(batch, 1, 128, T)`` input; checks shapes too."""
    want = dict(zip([o.name for o in reference.get_outputs()], reference.run(None, {"mel": mel_nchw})))
    got = {k: np.asarray(v) for k, v in port(mel_nchw.transpose(0, 2, 3, 1), training=False).items()}
    assert set(got) == set(want) == {"embedding", "frame_embedding", "logits"}
    batch, t = mel_nchw.shape[0], mel_nchw.shape[-1]
    assert got["embedding"].shape == (batch, EMBEDDING_DIM)
    assert got["frame_embedding"].shape == (batch, -(-t // 32), EMBEDDING_DIM)
    assert got["logits"].shape == (batch, N_AUDIOSET_CLASSES)
    diffs = {}
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        diffs[name] = float(np.max(np.abs(got[name] - w)))
    return diffs


@pytest.mark.data
@pytest.mark.parametrize("n_frames", LENGTHS)
def test_port_matches_reference_on_random_input(port, reference, n_frames: int) -> None:
    mel = np.random.default_rng(n_frames).standard_normal((2, 1, 128, n_frames)).astype(np.float32)
    diffs = _compare(port, reference, mel)
    assert max(diffs.values()) <= ATOL, diffs


@pytest.mark.data
@pytest.mark.parametrize("n_frames", (*LENGTHS, None))
def test_port_matches_reference_on_real_log_mel(port, reference, real_log_mel: np.ndarray,
                                                n_frames: int | None) -> None:
    start = 40 if n_frames else 0  # skip the leading silence of a window; None: the whole clip
    window = real_log_mel[:, start:start + n_frames] if n_frames else real_log_mel
    assert n_frames is None or window.shape[1] == n_frames
    diffs = _compare(port, reference, window[None, None])
    assert max(diffs.values()) <= ATOL, diffs


@pytest.mark.data
def test_frame_embedding_averages_to_embedding(port, real_log_mel: np.ndarray) -> None:
    out = port(real_log_mel[None, :, :300, None], training=False)
    np.testing.assert_allclose(np.mean(np.asarray(out["frame_embedding"]), axis=1), np.asarray(out["embedding"]),
                               atol=1e-5)


@pytest.mark.data
def test_parameter_count_matches_checkpoint(port) -> None:
    counts = parameter_count(port)
    assert counts["trainable"] == CHECKPOINT_PARAMETERS
    assert counts["total"] == counts["trainable"] + counts["non_trainable"]


@pytest.mark.data
def test_headless_model_loads_and_skips_head(checkpoint: Path) -> None:
    model = build_mn04(n_frames=149)
    counts = load_weights(model, checkpoint / WEIGHTS_FILE)
    assert counts["skipped_head_tensors"] == 4 and "logits" not in model.output
    assert parameter_count(model)["trainable"] == CHECKPOINT_PARAMETERS - (384 * 512 + 512 + 512 * 527 + 527)
    assert model.output["frame_embedding"].shape[1:] == (5, EMBEDDING_DIM)


@pytest.mark.data
@pytest.mark.parametrize(
    "edit, message",
    [
        ("drop_module", "layers without tensors"),
        ("drop_bias", "needs"),
        ("extra", "tensors without a layer"),
        ("shape", "do not match"),
    ],
)
def test_load_weights_refuses_a_mismatched_state_dict(port, checkpoint: Path, tmp_path: Path, edit: str,
                                                      message: str) -> None:
    with np.load(checkpoint / WEIGHTS_FILE) as npz:
        state = {k: npz[k] for k in npz.files}
    se = "features.4.block.2.conc_se_layers.0.fc1"
    if edit == "drop_module":
        del state[f"{se}.weight"], state[f"{se}.bias"]
    elif edit == "drop_bias":
        del state[f"{se}.bias"]
    elif edit == "extra":
        state["features.17.0.weight"] = np.zeros((8, 8, 1, 1), np.float32)
    else:
        state[f"{se}.weight"] = state[f"{se}.weight"][:, :-1]
    before = [w.copy() for w in port.get_layer(f"{se}").get_weights()]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **state)
    with pytest.raises(ValueError, match=message):
        load_weights(port, bad)
    after = port.get_layer(f"{se}").get_weights()  # nothing half-loaded
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_widths_follow_make_divisible() -> None:
    blocks = scaled_blocks(0.4)
    assert [b.out_ch for b in blocks] == [8, 16, 16, 16, 16, 16, 32, 32, 32, 32, 48, 48, 64, 64, 64]
    assert [b.expanded for b in blocks] == [8, 24, 32, 32, 48, 48, 96, 80, 72, 72, 192, 272, 272, 384, 384]
    assert [make_divisible(b.expanded // 4) for b in blocks if b.use_se] == [8, 16, 16, 48, 72, 72, 96, 96]


def test_hard_swish_is_pytorchs() -> None:
    """Keras 3's ``hard_swish`` is PyTorch's ``x * relu6(x + 3) / 6`` (not Keras 2's 0.2x + 0.5)."""
    import keras

    x = np.linspace(-6, 6, 49).astype(np.float32)
    got = keras.ops.convert_to_numpy(keras.layers.Activation("hard_swish")(x))
    np.testing.assert_allclose(got, x * np.clip(x + 3, 0, 6) / 6, atol=1e-6)
