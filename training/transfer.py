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

from typing import Any

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
    import keras
    from keras import layers

    from .architectures import _input, _standardised_log_mel, _stats
    from .efficientat import build_mn04, default_weights_path

    stats = _stats(stats, norm_mean, norm_var)
    inp = _input(input_shape)
    x = _standardised_log_mel(inp, stats)
    x = layers.Rescaling(INPUT_SCALE, name="to_efficientat_scale")(x)
    encoder = build_mn04(n_mels=input_shape[0], n_frames=input_shape[1], weights=weights or default_weights_path())
    if freeze_batchnorm:
        for layer in encoder.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    emb = encoder(x)["embedding"]
    emb = layers.Dropout(dropout, name="drop_embedding")(emb)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(emb)
    return keras.Model(inp, out, name=name)
