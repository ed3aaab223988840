"""Transfer learning: EfficientAT's AudioSet encoder fine-tuned on the runtime's log-mel windows.

Position in the pipeline: an architecture for :mod:`training.train` (``--arch mn04_ft``). It
takes the same input as every other shipped model, the runtime's log-mel window (float32
``(batch, n_mels, n_frames, 1)``, dB), so the runtime needs no second front end: one recipe,
carried in the ONNX metadata as before.

The encoder is the Keras port of ``mn04_as`` (:mod:`training.efficientat`, MobileNetV3-Large x 0.4,
Schmid, Koutini & Widmer 2023, AudioSet mAP 0.432, MIT licence) with its AudioSet weights. Our
log-mel differs from the front end it was trained with (dB instead of natural log, 40 Slaney mel
bands to 4 kHz at a 20 ms hop instead of 128 Kaldi bands to 15 kHz at 10 ms), so the input is
standardised with the training windows' mean and variance and scaled to the spread of
EfficientAT's ``(ln(mel) + 4.5) / 5`` (about 0.5 per standard deviation of a dB log-mel: 1 dB is
0.23 natural-log units, and speech log-mels spread about 10 dB). Fine-tuning absorbs the rest.

BatchNorm statistics of the encoder stay frozen (inference mode): with batches of 64 windows from
a few speakers, re-estimating them would fit the training voices, the opposite of what a
pretrained encoder is for. The encoder's weights are trained; a dropout + dense head maps the
384-d embedding to the classes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from stream_ser.features import FeatureConfig

#: Multiplier from a standardised dB log-mel to the spread of EfficientAT's input (module docstring).
INPUT_SCALE = 0.5


def mn04_ft(input_shape: tuple[int, int], n_classes: int, norm_mean: float | None = None,
            norm_var: float | None = None, stats: Any = None, weights: str | None = None, dropout: float = 0.3,
            freeze_batchnorm: bool = True, name: str = "mn04_ft") -> Any:
    """EfficientAT ``mn04`` with AudioSet weights and a softmax head over the runtime's log-mel.

    Args:
        input_shape: ``(n_mels, n_frames)`` of one window (40 x 149 for the shipped recipe).
        n_classes: Output classes.
        norm_mean, norm_var: Mean and variance of the training log-mels (dB), for the input
            standardisation baked into the graph.
        stats: Or the same as :class:`training.architectures.InputStats` (the experiment
            harness's form); it wins over ``norm_mean``/``norm_var``.
        weights: The ``.npz`` state dict (default :func:`training.efficientat.default_weights_path`).
        dropout: Dropout before the head.
        freeze_batchnorm: Keep the encoder's BatchNorm statistics (module docstring).
        name: Model name.

    Returns:
        ``keras.Model``: input ``log_mel`` float32 ``(batch, n_mels, n_frames, 1)``, output
        ``probabilities`` float32 ``(batch, n_classes)`` (softmax).

    Raises:
        FileNotFoundError: The pretrained weights are not where they are looked for.
    """
    from keras import layers

    from .architectures import _input, _standardised_log_mel, _stats

    stats = _stats(stats, norm_mean, norm_var)
    inp = _input(input_shape)
    x = _standardised_log_mel(inp, stats)
    x = layers.Rescaling(INPUT_SCALE, name="to_efficientat_scale")(x)
    return _encoder_with_head(inp, x, n_classes, weights, dropout, freeze_batchnorm, name)


def _encoder_with_head(inp: Any, x: Any, n_classes: int, weights: str | None, dropout: float, freeze_batchnorm: bool,
                       name: str) -> Any:
    """The pretrained encoder over ``x`` (its input scale, ``(batch, n_mels, n_frames, 1)``),
    then dropout and a dense softmax head: the ``keras.Model`` from ``inp``."""
    import keras
    from keras import layers

    from .efficientat import build_mn04, default_weights_path

    encoder = build_mn04(n_mels=x.shape[1], n_frames=x.shape[2], weights=weights or default_weights_path())
    if freeze_batchnorm:
        for layer in encoder.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    emb = encoder(x)["embedding"]
    emb = layers.Dropout(dropout, name="drop_embedding")(emb)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(emb)
    return keras.Model(inp, out, name=name)


# --- EfficientAT's own band grid and input scale ------------------------------------------------

#: EfficientAT's front end (``../shared/pretrained/README.md``, from the upstream preprocessing):
#: 32 kHz audio, pre-emphasis ``x[n] - 0.97 x[n-1]``, a 1024-point STFT of an 800-sample Hann
#: window every 320 samples (10 ms), 128 mel bands on the HTK/Kaldi scale from 0 to 15 kHz,
#: ``ln(mel + 1e-5)``, then ``(x + 4.5) / 5``.
EAT_SAMPLE_RATE_HZ = 32000
EAT_N_FFT = 1024
EAT_WIN_LENGTH = 800
EAT_HOP_LENGTH = 320
EAT_N_MELS = 128
EAT_FMAX_HZ = 15000.0
EAT_PREEMPHASIS = 0.97
EAT_FLOOR = 1e-5
EAT_SHIFT = 4.5
EAT_DIVISOR = 5.0


def efficientat_grid_edges() -> np.ndarray:
    """Band edges (Hz) of EfficientAT's mel grid: float64 ``(130,)``; band ``i`` rises from
    ``edges[i]``, peaks at ``edges[i + 1]`` and falls to ``edges[i + 2]`` (``librosa.mel_frequencies``,
    HTK scale ``2595 log10(1 + f / 700)``, the Kaldi scale ``1127 ln(1 + f / 700)`` to 4 digits)."""
    import librosa

    return librosa.mel_frequencies(EAT_N_MELS + 2, fmin=0.0, fmax=EAT_FMAX_HZ, htk=True)


def efficientat_feature_config(fmax_hz: float, speech_gate: str) -> FeatureConfig:
    """The runtime's feature recipe on EfficientAT's band grid, at 16 kHz.

    The same STFT as EfficientAT's at half the sample rate (a 512-point FFT of a 25 ms Hann
    window every 10 ms: the same 31.25 Hz bins and the same frame times) and its own mel bands,
    the lowest ones: every band of the 128-band 0-15 kHz grid whose top edge is at most
    ``fmax_hz`` (103 bands up to 7.9 kHz for 8 kHz, the Nyquist frequency of our corpora). So the
    encoder sees each band at the row it was trained on; the bands above 8 kHz, silent in 16 kHz
    audio, are left out rather than computed as constants. The runtime computes it as any other
    recipe (HTK mel scale, unnormalised triangles, dB); :func:`efficientat_input` maps the dB
    log-mel to EfficientAT's scale inside the graph.

    Args:
        fmax_hz: Highest band edge wanted (Hz, at most 8000).
        speech_gate: The recipe's speech gate.

    Raises:
        ValueError: If not even one band of the grid fits under ``fmax_hz``.
    """
    edges = efficientat_grid_edges()
    n_mels = int(np.sum(edges[2:] <= min(fmax_hz, FeatureConfig().sample_rate_hz / 2) + 1e-6))
    if n_mels < 1:
        raise ValueError(f"fmax_hz = {fmax_hz:g}: EfficientAT's lowest band reaches {edges[2]:.1f} Hz")
    return dataclasses.replace(FeatureConfig(), n_fft=512, win_length=400, hop_length=160, n_mels=n_mels,
                               fmin_hz=0.0, fmax_hz=float(edges[n_mels + 1]), mel_htk=True, mel_norm=None,
                               speech_gate=speech_gate)


def efficientat_log_mel(audio: np.ndarray, sample_rate_hz: int = 16000) -> np.ndarray:
    """EfficientAT's own front end (evaluation mode) of ``audio``: float32 ``(128, frames)`` on its
    input scale ``(ln(mel + 1e-5) + 4.5) / 5``.

    The reference that :func:`efficientat_band_offsets` calibrates the runtime's log-mel against:
    ``audio`` resampled to 32 kHz (``librosa.resample``, soxr), pre-emphasis, a centred
    1024-point STFT of an 800-sample symmetric Hann window (reflect padding), power, 128 HTK mel
    triangles from 0 to 15 kHz (``librosa.filters.mel``, unnormalised; the Kaldi triangles are
    linear in mel rather than in Hz, a difference inside each band).

    Args:
        audio: float ``(n,)`` samples at ``sample_rate_hz``.
        sample_rate_hz: Its sample rate (Hz).
    """
    import librosa
    import scipy.signal

    x = np.asarray(audio, dtype=np.float64)
    if sample_rate_hz != EAT_SAMPLE_RATE_HZ:
        x = librosa.resample(x, orig_sr=sample_rate_hz, target_sr=EAT_SAMPLE_RATE_HZ, res_type="soxr_hq")
    x = np.append(x[:1], x[1:] - EAT_PREEMPHASIS * x[:-1])
    window = scipy.signal.get_window("hann", EAT_WIN_LENGTH, fftbins=False)
    spec = librosa.stft(x, n_fft=EAT_N_FFT, hop_length=EAT_HOP_LENGTH, win_length=EAT_WIN_LENGTH, window=window,
                        center=True, pad_mode="reflect")
    mel = librosa.filters.mel(sr=EAT_SAMPLE_RATE_HZ, n_fft=EAT_N_FFT, n_mels=EAT_N_MELS, fmin=0.0, fmax=EAT_FMAX_HZ,
                              htk=True, norm=None) @ (np.abs(spec) ** 2)
    return ((np.log(mel + EAT_FLOOR) + EAT_SHIFT) / EAT_DIVISOR).astype(np.float32)


@functools.lru_cache(maxsize=4)
def efficientat_band_offsets(config: FeatureConfig, seed: int = 0) -> np.ndarray:
    """Per-band offsets (natural-log units) from the runtime's mel power to EfficientAT's:
    float64 ``(config.n_mels,)``.

    Measured on white noise (4 s, unit variance, seeded): ``ln`` of each band's mean power in
    :func:`efficientat_log_mel`'s front end minus ``ln`` of it in the runtime's
    (:func:`stream_ser.features.log_mel` of ``config``). White noise fills every band evenly, so
    the difference is the two front ends' gain in that band: the pre-emphasis (-29 dB at 100 Hz,
    +3 dB at 8 kHz), the window lengths and the resampling. Deterministic.

    Args:
        config: An :func:`efficientat_feature_config` recipe.
        seed: Seed of the noise.
    """
    from stream_ser.features import log_mel

    noise = np.random.default_rng(seed).standard_normal(int(4 * config.sample_rate_hz))
    theirs = np.exp(efficientat_log_mel(noise, config.sample_rate_hz).astype(np.float64) * EAT_DIVISOR - EAT_SHIFT)
    theirs = np.log(np.maximum(theirs - EAT_FLOOR, 1e-30).mean(axis=1))[: config.n_mels]
    n = config.window_samples
    ours = np.stack([log_mel(noise[i:i + n].astype(np.float32), config) for i in (0, n // 4)])  # dB
    ours = np.log(np.mean(10.0 ** (ours.astype(np.float64) / 10.0), axis=(0, 2)))
    return theirs - ours


def efficientat_input(inp: Any, config: FeatureConfig) -> Any:
    """Map the runtime's dB log-mel to EfficientAT's input scale inside the graph.

    ``(max(ln P + offset_band, ln 1e-5) + 4.5) / 5``, with ``ln P = dB * ln(10) / 10`` and the
    per-band offsets of :func:`efficientat_band_offsets`: four frozen layers (a rescaling, a
    1x1 depthwise convolution over the bands that adds the offsets, a ReLU that applies the
    floor, a rescaling), all constant-folded or elementwise in ONNX.

    Args:
        inp: Keras tensor ``(batch, n_mels, n_frames, 1)``, dB.
        config: The :func:`efficientat_feature_config` the windows were computed with.

    Returns:
        Keras tensor of the same shape on EfficientAT's scale.
    """
    from keras import layers

    floor = float(np.log(EAT_FLOOR))
    x = layers.Rescaling(float(np.log(10.0) / 10.0), name="db_to_ln")(inp)
    x = layers.Permute((3, 2, 1), name="bands_last")(x)  # (batch, 1, frames, bands)
    shift = layers.DepthwiseConv2D(1, use_bias=True, trainable=False, name="efficientat_band_gain")
    x = shift(x)
    shift.set_weights([np.ones((1, 1, config.n_mels, 1), np.float32),
                       (efficientat_band_offsets(config) - floor).astype(np.float32)])
    x = layers.ReLU(name="efficientat_floor")(x)
    x = layers.Rescaling(1.0 / EAT_DIVISOR, offset=(floor + EAT_SHIFT) / EAT_DIVISOR, name="to_efficientat_scale")(x)
    return layers.Permute((3, 2, 1), name="bands_first")(x)


def mn04_native(input_shape: tuple[int, int], n_classes: int, stats: Any = None, weights: str | None = None,
                dropout: float = 0.3, name: str = "mn04_native") -> Any:
    """EfficientAT ``mn04`` with AudioSet weights, fed its own band grid on its own scale.

    The input is the log-mel of :func:`efficientat_feature_config` (the recipe's ``front_end =
    "efficientat"``), mapped by :func:`efficientat_input`, so the pretrained filters see the
    frequencies and levels they were trained on: no standardisation to training statistics.
    BatchNorm statistics stay frozen; a dropout + dense head maps the 384-d embedding to the
    classes.

    Args:
        input_shape: ``(n_mels, n_frames)`` of one window (103 x 298 for 8 kHz).
        n_classes: Output classes.
        stats: Unused (the input scale is EfficientAT's own); accepted as the harness passes it.
        weights: The ``.npz`` state dict (default :func:`training.efficientat.default_weights_path`).
        dropout: Dropout before the head.
        name: Model name.

    Returns:
        ``keras.Model``: input ``log_mel`` float32 ``(batch, n_mels, n_frames, 1)``, output
        ``probabilities`` float32 ``(batch, n_classes)`` (softmax).

    Raises:
        ValueError: If ``input_shape`` is not the shape of an :func:`efficientat_feature_config`
            window (the lowest ``n_mels`` bands of the grid, 10 ms frames).
        FileNotFoundError: The pretrained weights are not where they are looked for.
    """
    from .architectures import _input

    n_bands = int(input_shape[0]) if input_shape else 0
    config = efficientat_feature_config(float(efficientat_grid_edges()[min(max(n_bands, 1), EAT_N_MELS) + 1]),
                                        FeatureConfig().speech_gate)
    if input_shape is None or tuple(input_shape) != config.input_shape:
        raise ValueError(f"mn04_native takes the EfficientAT front end's {config.input_shape} windows, got "
                         f"{input_shape} (set front_end = \"efficientat\" in the recipe)")
    inp = _input(input_shape)
    return _encoder_with_head(inp, efficientat_input(inp, config), n_classes, weights, dropout, True, name)
