"""The project's unified emotion schema.

Every corpus reader in :mod:`training.corpora` maps its own emotion codes onto
these seven classes, so corpora can be pooled for training and evaluation.
The set is the intersection-friendly "Ekman six plus neutral" used by most
acted-emotion corpora (RAVDESS, TESS, CREMA-D, SAVEE, EmoDB); corpus classes
that do not fit are either merged (RAVDESS *calm* -> ``"neutral"``) or left
unlabelled (EmoDB *boredom* -> ``None``), as documented in each reader.

The order here is the order of the model's output units only until a model is
exported: the exporter writes the label list into the ONNX metadata, and the
runtime reads it from there (``docs/architecture.md``: no label lists in code).
"""

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
"""The seven class names, lower-case ASCII, in canonical order."""
