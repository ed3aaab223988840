"""Exact rewrites of an exported ONNX graph that make onnxruntime faster (issue #6).

**Scalar constants at the rank of the tensor they meet.** tf2onnx writes Keras's ``Rescaling``
layer (the input standardisation every architecture starts with, ``training.architectures``)
as ``Mul`` and ``Add`` of the ``(batch, n_mels, n_frames, 1)`` log-mel with 0-d constants.
onnxruntime's CPU kernels (measured with 1.31) take a slow broadcasting path for a scalar
against a tensor whose last axis has length 1: the two nodes cost 150-250 us per window, a
quarter of the shipped model's inference, against 8 us for the same arithmetic when the constant
has shape ``(1, 1, 1, 1)``. :func:`match_scalar_ranks` gives every single-element constant of
an elementwise node the rank of the node's other input. The arithmetic is the same (same
values, same broadcast result), so outputs are bit-identical; ``benchmarks/bench_hop.py`` and
``onnxruntime``'s profiler show the gain.

Usage (rewrite an exported model in place; outputs are compared on real windows first)::

    python -m training.graph_passes models/stream-ser.onnx --data ../shared/data

:func:`training.export.export_onnx` applies the pass to every new export.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("training.graph_passes")

#: Elementwise binary ops (numpy-style broadcasting) whose scalar operands are rewritten.
ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"})


def _ranks(proto: Any) -> dict[str, int]:
    """Rank of every value whose shape ONNX shape inference can tell."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    g = inferred.graph
    ranks = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            ranks[v.name] = len(t.shape.dim)
    for init in g.initializer:
        ranks[init.name] = len(init.dims)
    return ranks


def match_scalar_ranks(proto: Any) -> int:
    """Give single-element constants of elementwise nodes the rank of the other operand.

    For every node in :data:`ELEMENTWISE` with one operand an initializer holding one element
    at a lower rank than the other operand (whose rank shape inference knows), the node is
    pointed at a copy of that constant reshaped to ``(1,) * rank``. The original initializer is
    removed when nothing else uses it. Numerically exact: the broadcast result is the same.

    Args:
        proto: An ``onnx.ModelProto``, modified in place.

    Returns:
        The number of node inputs rewritten (0 when there is nothing to do).
    """
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    ranks = _ranks(proto)
    added: dict[tuple[str, int], str] = {}
    rewritten = 0
    for node in g.node:
        if node.op_type not in ELEMENTWISE or len(node.input) != 2:
            continue
        for k in (0, 1):
            const, other = node.input[k], node.input[1 - k]
            init = inits.get(const)
            rank = ranks.get(other)
            if init is None or rank is None or int(np.prod(init.dims, dtype=np.int64)) != 1 or len(init.dims) >= rank:
                continue
            key = (const, rank)
            if key not in added:
                value = numpy_helper.to_array(init).reshape((1,) * rank)
                name = f"{const}__rank{rank}"
                g.initializer.append(numpy_helper.from_array(value, name))
                added[key] = name
            node.input[k] = added[key]
            rewritten += 1
    used = {i for n in g.node for i in n.input} | {v.name for v in list(g.output) + list(g.input)}
    for name in {c for c, _ in added}:
        if name not in used:
            g.initializer.remove(inits[name])
    return rewritten


def main(argv: list[str] | None = None) -> None:
    """Rewrite an exported model in place, after checking its outputs do not change."""
    import onnx

    from stream_ser.model import EmotionModel

    parser = argparse.ArgumentParser(prog="python -m training.graph_passes", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="an exported .onnx model (rewritten in place)")
    parser.add_argument("--data", type=Path, required=True, help="corpora folder: real windows for the output check")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    from .corpora import discover
    from .quantize import calibration_windows  # the engine's windows of the given clips

    proto = onnx.load(str(args.model))
    n = match_scalar_ranks(proto)
    if n == 0:
        log.info("%s: nothing to rewrite", args.model)
        return
    onnx.checker.check_model(proto)
    before = EmotionModel(args.model)
    clips = sorted(u.path for u in discover(args.data))[::40]
    windows = calibration_windows(clips, before, max_windows=200)
    tmp = args.model.with_suffix(".rewrite.onnx")
    onnx.save(proto, str(tmp))
    try:
        diff = float(np.max(np.abs(EmotionModel(tmp).predict(windows) - before.predict(windows))))
        if diff != 0.0:
            raise SystemExit(f"outputs changed by up to {diff:.2e} on {len(windows)} windows; {args.model} left as it was")
        tmp.replace(args.model)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s: %d scalar operands rewritten; outputs identical on %d real windows", args.model, n, len(windows))


if __name__ == "__main__":
    main()
