"""Keras port of EfficientAT's MobileNetV3 of width 0.4 (``mn04_as``), with its AudioSet weights.

Position in the pipeline: a pretrained audio encoder for transfer learning (TensorFlow/Keras;
training only, never imported by the runtime). :func:`build_mn04` builds the network,
:func:`load_weights` copies the PyTorch state dict (stored as ``.npz``) into it, and
:func:`parameter_count` reports its size. ``tests/test_efficientat.py`` checks the port against
the reference ONNX forward pass shipped with the weights (``shared/pretrained/efficientat-mn04``).

Sources:
    - Schmid F, Koutini K, Widmer G (2023). *Efficient Large-Scale Audio Tagging via
      Transformer-to-CNN Knowledge Distillation.* ICASSP 2023 (upstream repository
      ``fschmid56/EfficientAT``, model ``mn04_as``, AudioSet mAP 0.432).
    - Howard A et al. (2019). *Searching for MobileNetV3.* ICCV 2019 (the MobileNetV3-Large block
      table, hard-swish, squeeze-and-excitation placement).
    - ``shared/pretrained/README.md`` (architecture, block table, front end) and the reference
      ONNX graph ``mn04_as.onnx`` (every detail below was read off its node list).

Architecture (as in the checkpoint; channels-last here, PyTorch is channels-first):
    - Input: float32 ``(batch, n_mels, n_frames, 1)``, the log-mel of EfficientAT's front end
      (frequency is the height axis, time the width axis, as in PyTorch's ``(batch, 1, mels,
      time)``). Total stride 32 on both axes: 128 mels give 4 frequency rows, and ``n_frames``
      frames of 10 ms give ``ceil(n_frames / 32)`` output frames (one per 320 ms, about 3 per
      second).
    - Stem ``features.0``: 3x3 conv, stride 2, 1 -> 8 channels, BatchNorm, hard-swish.
    - Blocks ``features.1`` .. ``features.15``: MobileNetV3-Large inverted residuals with every
      width multiplied by 0.4 (:func:`make_divisible`). Each is 1x1 expansion + BN + act (absent
      when the expanded width equals the input width, i.e. block 1), kxk depthwise + BN + act,
      squeeze-and-excitation where flagged, 1x1 projection + BN (no activation), and a residual
      add when stride is 1 and input and output widths match.
    - SE: mean over frequency and time, dense to ``make_divisible(c // 4)`` with ReLU, dense back
      to ``c`` with a **plain sigmoid** (not the hard-sigmoid of the MobileNetV3 paper or
      torchvision), channel-wise product. It sits after the depthwise activation.
    - ``features.16``: 1x1 conv 64 -> 384, BN, hard-swish.
    - Head (``include_head``): global average, dense 384 -> 512, hard-swish, dropout 0.2 (inactive
      at inference), dense 512 -> 527 AudioSet logits (multi-label: apply a sigmoid, not softmax).
    - Activations: ReLU, hard-swish ``x * relu6(x + 3) / 6`` (PyTorch's ``Hardswish``, equal to
      Keras 3's ``hard_swish``). BatchNorm epsilon 0.001; PyTorch momentum 0.01 is Keras
      momentum 0.99. Convolutions have no bias (BatchNorm follows each).
    - Padding: PyTorch's symmetric ``(k - 1) / 2`` on every side, reproduced by an explicit
      ``ZeroPadding2D`` before a ``'valid'`` convolution (Keras ``'same'`` pads stride-2 layers
      asymmetrically, which shifts the sampling grid).

Front end the checkpoint was trained with (EfficientAT's preprocessing, evaluation mode; not
implemented here): 32 kHz audio, pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]``, STFT n_fft 1024,
symmetric Hann window of 800 samples, hop 320 (10 ms), centred frames with reflect padding,
power spectrum, 128 Kaldi-style triangular mel bands (``mel = 1127 ln(1 + f / 700)``) from 0 to
15 kHz, ``log(mel + 1e-5)``, then ``(x + 4.5) / 5``. That is *not* the runtime's dB log-mel.

Layer names are the state-dict prefixes: the tensor ``features.4.block.1.0.weight`` goes to the
layer named ``features.4.block.1.0``. Layers without weights get the same prefix with a suffix
(``.pad``, ``.add``) or the index PyTorch gives them (``features.0.2`` is the stem's hard-swish).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: File name of the state dict (PyTorch tensors as numpy arrays) inside :data:`WEIGHTS_SUBDIR`.
WEIGHTS_FILE = "mn04_as_mAP_432.npz"
#: File name of the reference ONNX forward pass beside the weights.
REFERENCE_ONNX_FILE = "mn04_as.onnx"
#: Folder of the checkpoint inside ``shared/pretrained``.
WEIGHTS_SUBDIR = "efficientat-mn04"
#: Width multiplier of ``mn04``.
WIDTH_MULT = 0.4
#: BatchNorm epsilon of EfficientAT (``partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)``).
BN_EPSILON = 1e-3
#: Keras BatchNorm momentum equal to PyTorch's 0.01 (Keras keeps ``momentum`` of the old value).
BN_MOMENTUM = 0.99
#: Channels of the embedding (``features.16``).
EMBEDDING_DIM = 384
#: Width of the head's hidden dense layer (``make_divisible(1280 * 0.4)``).
HEAD_HIDDEN = 512
#: AudioSet classes.
N_AUDIOSET_CLASSES = 527
#: Dropout of the head (only active in training).
HEAD_DROPOUT = 0.2
#: Product of all strides, on both the frequency and the time axis.
TOTAL_STRIDE = 32


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block of MobileNetV3-Large, before the width multiplier.

    Attributes:
        in_ch: Input channels.
        kernel: Depthwise kernel size (square).
        expanded: Channels after the 1x1 expansion.
        out_ch: Output channels.
        use_se: Squeeze-and-excitation after the depthwise convolution.
        activation: ``"relu"`` or ``"hard_swish"``.
        stride: Stride of the depthwise convolution (both axes).
    """

    in_ch: int
    kernel: int
    expanded: int
    out_ch: int
    use_se: bool
    activation: str
    stride: int


#: MobileNetV3-Large blocks (Howard et al. 2019, table 1), in EfficientAT's order.
MOBILENETV3_LARGE: tuple[BlockSpec, ...] = (
    BlockSpec(16, 3, 16, 16, False, "relu", 1),
    BlockSpec(16, 3, 64, 24, False, "relu", 2),
    BlockSpec(24, 3, 72, 24, False, "relu", 1),
    BlockSpec(24, 5, 72, 40, True, "relu", 2),
    BlockSpec(40, 5, 120, 40, True, "relu", 1),
    BlockSpec(40, 5, 120, 40, True, "relu", 1),
    BlockSpec(40, 3, 240, 80, False, "hard_swish", 2),
    BlockSpec(80, 3, 200, 80, False, "hard_swish", 1),
    BlockSpec(80, 3, 184, 80, False, "hard_swish", 1),
    BlockSpec(80, 3, 184, 80, False, "hard_swish", 1),
    BlockSpec(80, 3, 480, 112, True, "hard_swish", 1),
    BlockSpec(112, 3, 672, 112, True, "hard_swish", 1),
    BlockSpec(112, 5, 672, 160, True, "hard_swish", 2),
    BlockSpec(160, 5, 960, 160, True, "hard_swish", 1),
    BlockSpec(160, 5, 960, 160, True, "hard_swish", 1),
)
#: Stem width and last-conv width of MobileNetV3-Large, before the multiplier.
STEM_CHANNELS = 16
LAST_CHANNELS = 960  # 6 x the last block's output (160)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never losing more than 10 %.

    The rule of the MobileNet family (torchvision's ``_make_divisible``, used by EfficientAT).

    Args:
        value: Channel count before rounding (e.g. ``16 * 0.4``).
        divisor: The multiple (8).
        min_value: Smallest result; defaults to ``divisor``.

    Returns:
        The rounded channel count.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def scaled_blocks(width_mult: float = WIDTH_MULT) -> tuple[BlockSpec, ...]:
    """:data:`MOBILENETV3_LARGE` with every width multiplied and rounded (:func:`make_divisible`).

    Args:
        width_mult: Width multiplier (0.4 for ``mn04``).

    Returns:
        The 15 block specifications with actual channel counts (for 0.4: widths 8 .. 64,
        expansions 16 .. 384).
    """
    return tuple(
        BlockSpec(make_divisible(b.in_ch * width_mult), b.kernel, make_divisible(b.expanded * width_mult),
                  make_divisible(b.out_ch * width_mult), b.use_se, b.activation, b.stride)
        for b in MOBILENETV3_LARGE
    )


def default_pretrained_dir() -> Path:
    """``shared/pretrained`` beside the repository (as ``shared/data`` in ``tests/conftest.py``).

    When ``STREAM_SER_DATA`` names the data folder, the pretrained folder is its sibling
    ``pretrained``; otherwise it is ``<repo>/../shared/pretrained``.

    Returns:
        The path (it may not exist).
    """
    import os

    override = os.environ.get("STREAM_SER_DATA", "").strip()
    if override:
        return Path(override).expanduser().resolve().parent / "pretrained"
    return Path(__file__).resolve().parents[2] / "shared" / "pretrained"


def default_weights_path() -> Path:
    """Path of ``mn04_as_mAP_432.npz`` under :func:`default_pretrained_dir` (may not exist)."""
    return default_pretrained_dir() / WEIGHTS_SUBDIR / WEIGHTS_FILE


def _conv_bn_act(x: Any, name: str, filters: int | None, kernel: int, stride: int, activation: str | None,
                 depthwise: bool = False) -> Any:
    """PyTorch's ``Conv2dNormActivation``: [pad] conv (no bias), BatchNorm, [activation].

    Layer names follow the ``nn.Sequential`` indices: ``{name}.0`` conv, ``{name}.1`` BatchNorm,
    ``{name}.2`` activation; ``{name}.pad`` is the symmetric zero padding ``(kernel - 1) // 2``.

    Args:
        x: Keras tensor ``(batch, freq, time, c_in)``.
        name: State-dict prefix of the module (e.g. ``features.4.block.1``).
        filters: Output channels (ignored for a depthwise convolution).
        kernel: Square kernel size.
        stride: Stride on both axes.
        activation: ``"relu"``, ``"hard_swish"`` or None (projection convolutions).
        depthwise: Depthwise convolution (``groups == channels``, multiplier 1).

    Returns:
        Keras tensor ``(batch, ceil(freq / stride), ceil(time / stride), filters)``.
    """
    from keras import layers

    pad = (kernel - 1) // 2
    if pad:
        x = layers.ZeroPadding2D(((pad, pad), (pad, pad)), name=f"{name}.pad")(x)
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="valid", use_bias=False, name=f"{name}.0")(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=f"{name}.0")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}.1")(x)
    if activation is not None:
        x = layers.Activation(activation, name=f"{name}.2")(x)
    return x


def _squeeze_excitation(x: Any, name: str, channels: int) -> Any:
    """EfficientAT's SE (``ConcurrentSEBlock`` with one ``SqueezeExcitation`` over channels).

    Mean over frequency and time, dense to ``make_divisible(channels // 4)`` + ReLU, dense back to
    ``channels`` + sigmoid, then the input times that per-channel scale.

    Args:
        x: Keras tensor ``(batch, freq, time, channels)``.
        name: State-dict prefix of the SE module (``features.{i}.block.{j}.conc_se_layers.0``).
        channels: ``channels`` of ``x``.

    Returns:
        Keras tensor of the same shape as ``x``.
    """
    from keras import layers

    squeeze = make_divisible(channels // 4)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}.pool")(x)
    s = layers.Dense(squeeze, activation="relu", name=f"{name}.fc1")(s)
    s = layers.Dense(channels, activation="sigmoid", name=f"{name}.fc2")(s)
    return layers.Multiply(name=f"{name}.mul")([x, s])


def _inverted_residual(x: Any, index: int, spec: BlockSpec) -> Any:
    """One block ``features.{index}``: [expand] depthwise [SE] project [+ input].

    Args:
        x: Keras tensor ``(batch, freq, time, spec.in_ch)``.
        index: Position in ``features`` (1..15).
        spec: The block, already scaled (:func:`scaled_blocks`).

    Returns:
        Keras tensor ``(batch, ceil(freq / stride), ceil(time / stride), spec.out_ch)``.
    """
    from keras import layers

    prefix = f"features.{index}.block"
    y, j = x, 0
    if spec.expanded != spec.in_ch:
        y = _conv_bn_act(y, f"{prefix}.{j}", spec.expanded, 1, 1, spec.activation)
        j += 1
    y = _conv_bn_act(y, f"{prefix}.{j}", None, spec.kernel, spec.stride, spec.activation, depthwise=True)
    j += 1
    if spec.use_se:
        y = _squeeze_excitation(y, f"{prefix}.{j}.conc_se_layers.0", spec.expanded)
        j += 1
    y = _conv_bn_act(y, f"{prefix}.{j}", spec.out_ch, 1, 1, None)
    if spec.stride == 1 and spec.in_ch == spec.out_ch:
        y = layers.Add(name=f"features.{index}.add")([y, x])
    return y


def build_mn04(n_mels: int = 128, n_frames: int | None = None, weights: str | Path | None = None,
               include_head: bool = False) -> Any:
    """EfficientAT ``mn04`` (MobileNetV3-Large x 0.4) as a channels-last Keras model.

    Args:
        n_mels: Mel bands (height of the input). The checkpoint was trained on 128.
        n_frames: Time frames of the input (10 ms each), or None for any length.
        weights: ``.npz`` state dict to load (:func:`load_weights`, e.g.
            :func:`default_weights_path`), or None for random initialisation.
        include_head: Add the AudioSet classifier (output ``logits``).

    Returns:
        A ``keras.Model`` with input ``log_mel`` float32 ``(batch, n_mels, n_frames, 1)`` and a
        dict of outputs, all float32:

        - ``frame_embedding`` ``(batch, ceil(n_frames / 32), 384)``: the last feature map averaged
          over frequency (one vector per 320 ms);
        - ``embedding`` ``(batch, 384)``: averaged over frequency and time;
        - ``logits`` ``(batch, 527)`` with ``include_head``: AudioSet logits (pre-sigmoid).

        Layer names are the state-dict prefixes (module docstring).
    """
    import keras
    from keras import layers

    blocks = scaled_blocks(WIDTH_MULT)
    inp = keras.Input((n_mels, n_frames, 1), name="log_mel", dtype="float32")
    x = _conv_bn_act(inp, "features.0", make_divisible(STEM_CHANNELS * WIDTH_MULT), 3, 2, "hard_swish")
    for i, spec in enumerate(blocks, start=1):
        x = _inverted_residual(x, i, spec)
    x = _conv_bn_act(x, "features.16", make_divisible(LAST_CHANNELS * WIDTH_MULT), 1, 1, "hard_swish")
    freq_rows = x.shape[1]
    if freq_rows is None:
        raise ValueError("n_mels must be known to average over frequency")
    frames = layers.AveragePooling2D((freq_rows, 1), name="frame_pool")(x)  # (batch, 1, frames, c)
    frames = layers.Reshape((-1, x.shape[-1]), name="frame_embedding")(frames)
    clip = layers.GlobalAveragePooling2D(name="embedding")(x)  # classifier.0/1 of EfficientAT
    outputs = {"frame_embedding": frames, "embedding": clip}
    if include_head:
        h = layers.Dense(make_divisible(1280 * WIDTH_MULT), name="classifier.2")(clip)
        h = layers.Activation("hard_swish", name="classifier.3")(h)
        h = layers.Dropout(HEAD_DROPOUT, name="classifier.4")(h)
        outputs["logits"] = layers.Dense(N_AUDIOSET_CLASSES, name="classifier.5")(h)
    model = keras.Model(inp, outputs, name="efficientat_mn04")
    if weights is not None:
        load_weights(model, weights)
    return model


#: Names of the port's layers that hold weights (state-dict module prefixes).
_PORT_LAYER = re.compile(r"^(features|classifier)\.\d+(\.|$)")


def _all_layers(model: Any) -> list[Any]:
    """Every layer of ``model``, descending into nested models (a backbone inside a larger one)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _keras_weights(layer: Any, prefix: str, params: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Convert one PyTorch module's tensors to ``layer.get_weights()`` order and layout.

    Args:
        layer: The Keras layer named ``prefix``.
        prefix: State-dict module prefix (for messages).
        params: The module's tensors by parameter name (``weight``, ``bias``, ``running_mean``,
            ``running_var``); ``num_batches_tracked`` already removed.

    Returns:
        Arrays for ``layer.set_weights``.

    Raises:
        ValueError: On a layer type, parameter set or setting the port cannot take.
    """
    from keras import layers

    def need(*names: str) -> list[np.ndarray]:
        if set(params) != set(names):
            raise ValueError(f"{prefix}: state dict has {sorted(params)}, layer {type(layer).__name__} "
                             f"needs {sorted(names)}")
        return [np.asarray(params[n], dtype=np.float32) for n in names]

    if isinstance(layer, layers.DepthwiseConv2D):  # before Conv2D: a subclass in some versions
        if layer.use_bias or layer.depth_multiplier != 1:
            raise ValueError(f"{prefix}: depthwise layer must have no bias and multiplier 1")
        (w,) = need("weight")
        if w.ndim != 4 or w.shape[1] != 1:
            raise ValueError(f"{prefix}: depthwise kernel must be (c, 1, kh, kw), got {w.shape}")
        return [w.transpose(2, 3, 0, 1)]  # (c, 1, kh, kw) -> (kh, kw, c, 1)
    if isinstance(layer, layers.Conv2D):
        ws = need("weight", "bias") if layer.use_bias else need("weight")
        return [ws[0].transpose(2, 3, 1, 0), *ws[1:]]  # (out, in, kh, kw) -> (kh, kw, in, out)
    if isinstance(layer, layers.Dense):
        w, b = need("weight", "bias")
        return [w.T, b]  # (out, in) -> (in, out)
    if isinstance(layer, layers.BatchNormalization):
        if abs(layer.epsilon - BN_EPSILON) > 1e-12 or not (layer.center and layer.scale):
            raise ValueError(f"{prefix}: BatchNorm must have epsilon {BN_EPSILON}, centre and scale")
        return need("weight", "bias", "running_mean", "running_var")  # gamma, beta, mean, variance
    raise ValueError(f"{prefix}: no rule to load into a {type(layer).__name__}")


def load_weights(model: Any, npz_path: str | Path) -> dict[str, int]:
    """Copy EfficientAT's state dict into a model built by :func:`build_mn04`.

    Every tensor goes to the layer named by its module prefix (``features.4.block.1.0.weight``
    -> layer ``features.4.block.1.0``), transposed to Keras's layout: conv ``(out, in, kh, kw)``
    -> ``(kh, kw, in, out)``, depthwise ``(c, 1, kh, kw)`` -> ``(kh, kw, c, 1)``, dense
    ``(out, in)`` -> ``(in, out)``, BatchNorm ``weight, bias, running_mean, running_var`` ->
    ``gamma, beta, moving_mean, moving_variance``. ``num_batches_tracked`` is ignored. Nested
    models are searched too, so the backbone may sit inside a fine-tuning model; layers whose
    names are not state-dict prefixes (a new head) are left alone.

    Args:
        model: The Keras model.
        npz_path: The ``.npz`` state dict (e.g. :func:`default_weights_path`).

    Returns:
        Counts: ``tensors`` copied, ``values`` copied (scalars), ``layers`` filled, and
        ``skipped_head_tensors`` (the ``classifier.*`` tensors, when the model has no head).

    Raises:
        FileNotFoundError: If ``npz_path`` does not exist.
        ValueError: If a tensor finds no layer (other than the head's, for a headless model), a
            port layer receives no tensor, or a shape or layout does not match; nothing is
            half-loaded silently.
    """
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise FileNotFoundError(f"EfficientAT weights not found: {npz_path}")
    with np.load(npz_path) as state:
        tensors = {k: state[k] for k in state.files}

    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        prefix, _, param = key.rpartition(".")
        if param == "num_batches_tracked":
            continue
        groups.setdefault(prefix, {})[param] = value

    by_name = {layer.name: layer for layer in _all_layers(model)}
    port_layers = {n for n, layer in by_name.items() if _PORT_LAYER.match(n) and layer.weights}
    has_head = any(n.startswith("classifier.") for n in port_layers)

    unused: list[str] = []
    filled: set[str] = set()
    counts = {"tensors": 0, "values": 0, "layers": 0, "skipped_head_tensors": 0}
    pending: list[tuple[Any, list[np.ndarray]]] = []
    for prefix, params in sorted(groups.items()):
        layer = by_name.get(prefix)
        if layer is None:
            if prefix.startswith("classifier.") and not has_head:
                counts["skipped_head_tensors"] += len(params)
                continue
            unused.extend(f"{prefix}.{p}" for p in sorted(params))
            continue
        new = _keras_weights(layer, prefix, params)
        old = layer.get_weights()
        shapes_new, shapes_old = [w.shape for w in new], [w.shape for w in old]
        if shapes_new != shapes_old:
            raise ValueError(f"{prefix}: converted shapes {shapes_new} do not match layer shapes {shapes_old}")
        pending.append((layer, new))
        filled.add(prefix)
        counts["tensors"] += len(params)
        counts["values"] += int(sum(w.size for w in new))
    empty = sorted(port_layers - filled)
    if unused or empty:
        raise ValueError(f"EfficientAT weights do not match the model: tensors without a layer {unused}; "
                         f"layers without tensors {empty}")
    for layer, new in pending:
        layer.set_weights(new)
    counts["layers"] = len(filled)
    return counts


def parameter_count(model: Any) -> dict[str, int]:
    """Parameters of a Keras model (scalars, not tensors).

    For :func:`build_mn04` with the head, ``trainable`` equals the checkpoint's 983,599 trainable
    PyTorch parameters; ``non_trainable`` is the BatchNorm moving means and variances.

    Args:
        model: A built Keras model.

    Returns:
        ``{"trainable": ..., "non_trainable": ..., "total": ...}``.
    """
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    non_trainable = int(sum(int(np.prod(w.shape)) for w in model.non_trainable_weights))
    return {"trainable": trainable, "non_trainable": non_trainable, "total": trainable + non_trainable}
