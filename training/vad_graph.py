"""Silero VAD's sequence model with its convolutions as matrix products: the same function, about
three times cheaper in onnxruntime.

    python -m training.vad_graph                   # models/silero_vad_16k_sequence.onnx -> models/silero_vad_16k_sequence_mm.onnx
    python -m training.vad_graph --check           # rebuild in memory and compare with the committed file

Why. ``silero_vad_16k_sequence.onnx`` (Silero VAD 6.2.3, MIT, ``models/SILERO_VAD_LICENSE``)
scores a block of ``k`` 32 ms frames in one call, but each frame goes through its convolutions
on its own: the STFT (a Conv1d of 258 filters, kernel 256, stride 128, five positions) and four
encoder Conv1d layers (kernel 3, two to four positions each). onnxruntime runs a Conv1d batch
item by item, each a matrix product a few columns wide, so the 1.5 MFLOP of a frame took about
45 us (``benchmarks/bench_vad.py``): the VAD gate then doubled the time ``stream-ser analyse``
takes. The same layers written as matrix products over all ``k`` frames at once run in about
15 us per frame.

What is rewritten (every weight is the original's, rearranged; nothing is retrained):

* **STFT**: the reflect-padded 832 samples of a frame (the original ``Pad``, kept) hold the
  five 256-sample windows at stride 128, i.e. window ``i`` is 128-sample blocks ``i`` and
  ``i + 1`` of the first 768 samples. The original keeps windows 1-4 of the conv's output, so
  ``S = blocks[1:5] @ W[:, :128].T + blocks[2:6] @ W[:, 128:].T`` over a ``(k, 6, 128)`` view
  gives the same ``(k, 4, 258)`` values; the magnitude is ``sqrt(re^2 + im^2)`` of its two
  halves, as before, laid out ``(k, time, channels)``.
* **Encoder**: each Conv1d (kernel 3, padding 1, stride 1 or 2) + ReLU becomes a zero ``Pad``
  along time, three strided ``Slice``-s, a ``Concat`` along channels and one ``MatMul`` with
  the kernel reshaped to ``(3 * C_in, C_out)``, then the bias and ReLU; the layout stays
  ``(k, time, channels)``, which is what the LSTM's input ``Transpose`` made, so that
  ``Transpose`` goes.
* The reflect padding, the LSTM and the output layer are the original nodes.

The probabilities differ from the original's by float rounding only (summation order): at most
3.3e-6 on the committed fixtures, no 0.7 decision changed (``tests/test_vad.py``); the phase-1
evaluation (``training/vad_eval.py``) gives the same figures with either file (``docs/vad.md``).
Needs the ``onnx`` package (``pip install 'stream-ser[test]'``); the runtime only loads the result.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "models" / "silero_vad_16k_sequence.onnx"
TARGET = ROOT / "models" / "silero_vad_16k_sequence_mm.onnx"
#: SHA-256 of the original file (PyPI silero-vad 6.2.3, ``silero_vad/data/``).
SOURCE_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"

#: Samples per block the model takes (64 of context + 512 new) and the reflect padding of its STFT.
FRAME_INPUT = 576
STFT_PAD = 128


def build(source: Path = SOURCE):
    """The rewritten model (an ``onnx.ModelProto``) of a Silero sequence model file.

    Raises:
        ValueError: If the file is not the graph this rewrite knows (Silero 6.x sequence model).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    nodes = list(g.node)

    def producer(name: str):
        for n in nodes:
            if name in n.output:
                return n
        raise ValueError(f"{source}: no node makes {name!r}: not the Silero sequence graph this rewrite knows")

    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    if [i.name for i in g.input] != ["input", "h", "c"] or dims[1:] != [FRAME_INPUT]:
        raise ValueError(f"{source}: inputs are not input (k, {FRAME_INPUT}), h, c")
    pad = producer("/stft/padding/Pad_output_0")
    stft = producer("/stft/Conv_output_0")
    encoders = [producer(f"/encoder.{i}/Conv_output_0") for i in range(4)]
    lstm = producer("/recurrent/LSTM_output_0")
    if lstm.input[0] != "/Transpose_output_0" or producer("/Transpose_output_0").input[0] != "/Relu_3_output_0":
        raise ValueError(f"{source}: the LSTM is not fed by the last encoder layer")
    w_stft = inits[stft.input[1]]
    if w_stft.shape != (258, 1, 256):
        raise ValueError(f"{source}: STFT basis of shape {w_stft.shape}, expected (258, 1, 256)")

    new_nodes, new_inits = [], []

    def const(name: str, value) -> str:
        new_inits.append(numpy_helper.from_array(np.asarray(value), "mm/" + name))
        return "mm/" + name

    def op(kind: str, inputs: list[str], name: str, **attrs) -> str:
        new_nodes.append(helper.make_node(kind, inputs, ["mm/" + name], name="mm/" + name, **attrs))
        return "mm/" + name

    def i64(*values: int) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    # STFT: windows 1-4 of the padded frame as two matrix products over 128-sample blocks
    padded = FRAME_INPUT + 2 * STFT_PAD  # 832
    positions = (padded - 256) // 128 + 1  # 5; the original keeps positions 1..4
    p768 = op("Slice", [pad.output[0], const("stft/start", i64(0)), const("stft/end", i64(768)),
                        const("stft/axis", i64(1))], "stft/first768")
    blocks = op("Reshape", [p768, const("stft/blocks_shape", i64(-1, 6, 128))], "stft/blocks")
    first = op("Slice", [blocks, const("stft/a0", i64(1)), const("stft/a1", i64(positions)),
                         const("stft/a_axis", i64(1))], "stft/first_halves")
    second = op("Slice", [blocks, const("stft/b0", i64(2)), const("stft/b1", i64(positions + 1)),
                          const("stft/b_axis", i64(1))], "stft/second_halves")
    w1 = np.ascontiguousarray(w_stft[:, 0, :128].T, dtype=np.float32)
    w2 = np.ascontiguousarray(w_stft[:, 0, 128:].T, dtype=np.float32)
    spec = op("Add", [op("MatMul", [first, const("stft/w_first", w1)], "stft/mm_first"),
                      op("MatMul", [second, const("stft/w_second", w2)], "stft/mm_second")], "stft/spec")
    real = op("Slice", [spec, const("stft/re0", i64(0)), const("stft/re1", i64(129)), const("stft/re_axis", i64(2))],
              "stft/real")
    imag = op("Slice", [spec, const("stft/im0", i64(129)), const("stft/im1", i64(258)), const("stft/im_axis", i64(2))],
              "stft/imag")
    x = op("Sqrt", [op("Add", [op("Mul", [real, real], "stft/re2"), op("Mul", [imag, imag], "stft/im2")],
                       "stft/power")], "stft/magnitude")  # (k, 4, 129): time, channels
    length = positions - 1

    # encoder: Conv1d(kernel 3, pad 1) + ReLU as pad, strided slices, concat and one MatMul
    for i, conv in enumerate(encoders):
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        w, b = inits[conv.input[1]], inits[conv.input[2]]
        out_ch, in_ch, k = w.shape
        stride = int(attrs.get("strides", [1])[0])
        if k != 3 or list(attrs.get("pads", [0, 0])) != [1, 1] or list(attrs.get("dilations", [1])) != [1]:
            raise ValueError(f"{source}: encoder.{i} is not a kernel-3, padding-1 Conv1d")
        out_len = (length + 2 - k) // stride + 1
        xp = op("Pad", [x, const(f"enc{i}/pads", i64(0, 1, 0, 0, 1, 0))], f"enc{i}/padded")
        taps = [op("Slice", [xp, const(f"enc{i}/s{j}", i64(j)), const(f"enc{i}/e{j}", i64(j + stride * (out_len - 1) + 1)),
                             const(f"enc{i}/axis{j}", i64(1)), const(f"enc{i}/step{j}", i64(stride))], f"enc{i}/tap{j}")
                for j in range(k)]
        cols = op("Concat", taps, f"enc{i}/columns", axis=2)  # (k, out_len, 3 * in_ch), tap-major
        w_mm = np.ascontiguousarray(w.transpose(2, 1, 0).reshape(k * in_ch, out_ch), dtype=np.float32)
        y = op("Add", [op("MatMul", [cols, const(f"enc{i}/weight", w_mm)], f"enc{i}/product"),
                       const(f"enc{i}/bias", b.astype(np.float32))], f"enc{i}/biased")
        x = op("Relu", [y], f"enc{i}/relu")
        length = out_len
    if length != 1:
        raise ValueError(f"{source}: the encoder ends with {length} time steps per frame, expected 1")

    keep_before = nodes[: nodes.index(pad) + 1]
    after = nodes[nodes.index(lstm):]
    for n in after:
        n.input[:] = [x if name == "/Transpose_output_0" else name for name in n.input]
    used = {name for n in keep_before + after for name in n.input}
    graph = helper.make_graph(
        keep_before + new_nodes + after, "silero_vad_16k_sequence_mm", list(g.input), list(g.output),
        initializer=[i for i in g.initializer if i.name in used] + new_inits,
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="stream-ser training.vad_graph",
                            doc_string="Silero VAD 6.2.3 sequence model (MIT, Silero Team), convolutions rewritten as "
                            "matrix products by stream-ser's training/vad_graph.py; the same weights.")
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out


def compare(a: Path, b: Path) -> tuple[float, int, int]:
    """Silero probabilities of the committed fixtures (speech and non-speech) with both files:
    the largest difference, the frames whose 0.7 decision differs, and the frames."""
    import soundfile as sf

    from stream_ser.vad import DEFAULT_THRESHOLD, SileroScorer, frame_scores

    fixtures = ROOT / "tests" / "fixtures"
    x = np.concatenate([sf.read(str(p), dtype="float32")[0]
                        for p in sorted(fixtures.glob("*.flac")) + sorted((fixtures / "nonspeech").glob("*.ogg"))])
    pa, pb = frame_scores(x, SileroScorer(a)), frame_scores(x, SileroScorer(b))
    flips = int(np.count_nonzero((pa >= DEFAULT_THRESHOLD) != (pb >= DEFAULT_THRESHOLD)))
    return float(np.abs(pa - pb).max()), flips, int(pa.size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.vad_graph", description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=SOURCE)
    ap.add_argument("--out", type=Path, default=TARGET)
    ap.add_argument("--check", action="store_true", help="build in memory; compare with --out instead of writing it")
    args = ap.parse_args(argv)
    digest = hashlib.sha256(args.src.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        print(f"note: {args.src} has SHA-256 {digest}, not silero-vad 6.2.3's {SOURCE_SHA256}", file=sys.stderr)
    data = build(args.src).SerializeToString()
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out}: {'identical to the rebuilt graph' if same else 'DIFFERS from the rebuilt graph'}")
        if not same:
            return 1
    else:
        args.out.write_bytes(data)
        print(f"wrote {args.out} ({len(data)} bytes, SHA-256 {hashlib.sha256(data).hexdigest()})")
    diff, flips, frames = compare(args.src, args.out)
    print(f"fixtures: {frames} frames, largest probability difference {diff:.2e}, 0.7 decisions changed {flips}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
