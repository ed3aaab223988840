"""Write ``stream_ser/mel_basis.npz``: the mel filterbanks the runtime reads instead of importing librosa.

Usage::

    python -m training.mel_table            # the default FeatureConfig and the shipped model's recipe
    python -m training.mel_table --models models/stream-ser.onnx other.onnx

Each entry is ``librosa.filters.mel`` for one :class:`~stream_ser.features.FeatureConfig`,
named by :func:`stream_ser.features.mel_key`. ``tests/test_features_reference.py`` checks that
every entry equals librosa's output exactly; a config missing from the table still works (the
runtime then builds its filterbank with librosa, paying librosa's import once).
"""

from __future__ import annotations

import argparse

import numpy as np

from stream_ser.features import MEL_TABLE, FeatureConfig, librosa_mel_basis, mel_key


def write_table(configs: list[FeatureConfig]) -> dict[str, np.ndarray]:
    """Write the filterbanks of ``configs`` (plus those already in the table) to :data:`MEL_TABLE`.

    Returns:
        The table written: key -> float32 ``(n_mels, 1 + n_fft // 2)``.
    """
    table: dict[str, np.ndarray] = {}
    if MEL_TABLE.is_file():
        with np.load(MEL_TABLE) as old:
            table.update({k: old[k] for k in old.files})
    for cfg in configs:
        table[mel_key(cfg)] = librosa_mel_basis(cfg)
    np.savez_compressed(MEL_TABLE, **table)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["models/stream-ser.onnx"],
                        help="ONNX models whose feature recipe (from their metadata) the table must hold "
                        "(default: the shipped model)")
    args = parser.parse_args(argv)
    from stream_ser.model import EmotionModel

    configs = [FeatureConfig(), *(EmotionModel(p).feature_config for p in args.models)]
    for key, basis in write_table(configs).items():
        print(f"{MEL_TABLE}: {key} {basis.shape}")


if __name__ == "__main__":
    main()
