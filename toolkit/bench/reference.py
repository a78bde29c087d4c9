"""The fixed reference workloads that latency is normalized by.

A latency baseline in milliseconds is worthless on a shared or different machine; a ratio to a workload timed in
the same run, interleaved with the model, is not. The reference must (a) never change with the model under test,
so a slower model shows as a larger ratio, and (b) stress the machine the way the models do, so a busy or slow CPU
slows both alike. Both references below are one small "FOG-shaped" block: self-attention over T steps (explicit
MatMul-Softmax-MatMul), a feed-forward pair, a bidirectional LSTM, a classifier. The onnxruntime one is a
hand-built ONNX graph (no torch needed, so a device can run it); the eager one is the same arithmetic in torch.
INT8 graphs for TensorRT are a different beast on a CPU: thousands of tiny nodes (recurrence unrolled per step,
Q/DQ around every GEMM), bound by per-node dispatch rather than arithmetic. They are normalized by an unrolled Q/DQ
LSTM of the same per-step node pattern (`reference_int8_onnx`), which responds to a busy machine the same way.
The block comes in two sizes (SIZES), and a model is normalized by the one nearest it in MACs (log scale,
`reference_size`): fog-small by the small block (128 steps x 64 wide, 14 MMAC, ~0.8 ms), the 1st-place-shaped model
by the large one (its shape: 864 steps x 324 wide, 2.6 GMAC, ~120 ms). Why two: the speed of this shared machine
comes in modes lasting a few hundred milliseconds (the small block's 40 ms block medians jump between 0.65 and
0.85 ms), so a reference must run about as long as one model call to see the same mix of modes the model does.
Measured (docs/bench.md): 1st-place / small block spreads 14-22 % (p5-p95 of 5-block medians), / large block 5-9 %.
Changing a size here changes every normalized figure: bump REFERENCE_VERSION and re-record the baselines.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from deploy.lazy import lazy_import
from toolkit.timing import interleaved, onnxruntime_engine

onnx = lazy_import("onnx", "workstation", "building the reference ONNX graphs")
torch = lazy_import("torch", "workstation", "the PyTorch eager reference")

REFERENCE_VERSION = "fog-block-v3"  # v2: + unrolled Q/DQ reference for INT8; v3: + the large block
STEPS, WIDTH, HIDDEN, CLASSES = 128, 64, 64, 3
# (steps, width, LSTM hidden): "small" is fog-small's shape, "large" the 1st-place model's (its first BiLSTM)
SIZES = {"small": (STEPS, WIDTH, HIDDEN), "large": (864, 324, 324)}
OPSET = 17


def reference_macs(size: str = "small") -> int:
    """MACs of the block at `size`, counted as toolkit.export.macs counts them (MatMul and LSTM)."""
    t, d, h = SIZES[size]
    return 3 * t * d * d + 2 * t * t * d + 2 * t * d * 2 * d + t * 2 * 4 * h * (d + h) + t * 2 * h * CLASSES


def reference_size(model_macs: int | None) -> str:
    """The block size nearest the model in MACs on a log scale (the boundary is the sizes' geometric mean)."""
    if not model_macs:
        return "small"
    return min(SIZES, key=lambda size: abs(np.log(model_macs / reference_macs(size))))


def _weights(seed: int = 0, size: str = "small") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    _, WIDTH, HIDDEN = SIZES[size]  # noqa: N806 (the module's names, at this size)

    def w(*shape):  # moderate values: no denormals, no overflow, so speed does not depend on the draw
        return (rng.standard_normal(shape) / np.sqrt(shape[-2] if len(shape) > 1 else 1)).astype(np.float32)

    return {
        "wq": w(WIDTH, WIDTH), "wk": w(WIDTH, WIDTH), "wv": w(WIDTH, WIDTH),
        "w1": w(WIDTH, 2 * WIDTH), "w2": w(2 * WIDTH, WIDTH),
        "lstm_w": w(2, 4 * HIDDEN, WIDTH), "lstm_r": w(2, 4 * HIDDEN, HIDDEN),
        "w_out": w(2 * HIDDEN, CLASSES),
    }


def reference_input(batch: int = 1, size: str = "small") -> np.ndarray:
    steps, width, _ = SIZES[size]
    return np.random.default_rng(1).standard_normal((batch, steps, width)).astype(np.float32)


def reference_onnx(path, batch: int = 1, size: str = "small"):
    """Write the reference block as an ONNX file (fixed shape (batch, steps, width) of `size`), return the path."""
    TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper  # noqa: N806
    STEPS, WIDTH, HIDDEN = SIZES[size]  # noqa: N806
    wts = _weights(size=size)
    scale = np.array(1.0 / np.sqrt(WIDTH), np.float32)
    inits = [numpy_helper.from_array(v, k) for k, v in wts.items()]
    inits += [numpy_helper.from_array(scale, "scale"),
              numpy_helper.from_array(np.array([STEPS, batch, 2 * HIDDEN], np.int64), "lstm_shape")]
    mm = helper.make_node
    nodes = [
        mm("MatMul", ["x", "wq"], ["q"]), mm("MatMul", ["x", "wk"], ["k"]), mm("MatMul", ["x", "wv"], ["v"]),
        mm("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        mm("MatMul", ["q", "kt"], ["s0"]), mm("Mul", ["s0", "scale"], ["s"]),
        mm("Softmax", ["s"], ["p"], axis=-1), mm("MatMul", ["p", "v"], ["att"]),
        mm("Add", ["x", "att"], ["h1"]),
        mm("MatMul", ["h1", "w1"], ["f1"]), mm("Relu", ["f1"], ["f2"]), mm("MatMul", ["f2", "w2"], ["f3"]),
        mm("Add", ["h1", "f3"], ["h2"]),
        mm("Transpose", ["h2"], ["tbi"], perm=[1, 0, 2]),
        mm("LSTM", ["tbi", "lstm_w", "lstm_r"], ["y"], hidden_size=HIDDEN, direction="bidirectional"),
        mm("Transpose", ["y"], ["yt"], perm=[0, 2, 1, 3]),  # (T, dirs, B, H) -> (T, B, dirs, H)
        mm("Reshape", ["yt", "lstm_shape"], ["yr"]),
        mm("MatMul", ["yr", "w_out"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, f"{REFERENCE_VERSION}-{size}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, STEPS, WIDTH])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [STEPS, batch, CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every onnxruntime/TensorRT this project targets
    onnx.save(model, str(path))
    return path


INT8_STEPS = 96


def reference_int8_onnx(path):
    """An unrolled LSTM over INT8_STEPS steps with Q/DQ before each recurrent GEMM, as models.qat exports one:
    per step Q, DQ, Gemm, Add, Split, 3 Sigmoid, 2 Tanh, 3 Mul, Add. Input (1, INT8_STEPS, WIDTH)."""
    TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper  # noqa: N806
    wts = _weights()
    w_in = wts["lstm_w"][0].T.copy()                        # (WIDTH, 4H)
    rec = wts["lstm_r"][0].T.copy()                         # (H, 4H)
    rec_scale = np.float32(np.abs(rec).max() / 127)
    inits = [numpy_helper.from_array(w_in, "w_in"),
             numpy_helper.from_array(np.round(rec / rec_scale).astype(np.int8), "r_q"),
             numpy_helper.from_array(np.array(rec_scale, np.float32), "r_scale"),
             numpy_helper.from_array(np.array(4.0 / 127, np.float32), "h_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "zero"),
             numpy_helper.from_array(np.zeros((1, HIDDEN), np.float32), "h0"),
             numpy_helper.from_array(np.array([INT8_STEPS, 4 * HIDDEN], np.int64), "proj_shape")]
    node = helper.make_node
    nodes = [node("MatMul", ["x", "w_in"], ["proj3"]), node("Reshape", ["proj3", "proj_shape"], ["proj"]),
             node("Split", ["proj"], [f"x{t}" for t in range(INT8_STEPS)], axis=0, num_outputs=INT8_STEPS),
             node("DequantizeLinear", ["r_q", "r_scale", "zero"], ["r"])]
    h, c = "h0", "h0"
    for t in range(INT8_STEPS):
        p = f"s{t}_"
        nodes += [
            node("QuantizeLinear", [h, "h_scale", "zero"], [p + "hq"]),
            node("DequantizeLinear", [p + "hq", "h_scale", "zero"], [p + "hd"]),
            node("Gemm", [p + "hd", "r"], [p + "g"]), node("Add", [p + "g", f"x{t}"], [p + "gx"]),
            node("Split", [p + "gx"], [p + "i", p + "f", p + "c", p + "o"], axis=1, num_outputs=4),
            node("Sigmoid", [p + "i"], [p + "si"]), node("Sigmoid", [p + "f"], [p + "sf"]),
            node("Sigmoid", [p + "o"], [p + "so"]), node("Tanh", [p + "c"], [p + "tc"]),
            node("Mul", [p + "sf", c], [p + "fc"]), node("Mul", [p + "si", p + "tc"], [p + "ic"]),
            node("Add", [p + "fc", p + "ic"], [p + "cn"]), node("Tanh", [p + "cn"], [p + "tcn"]),
            node("Mul", [p + "so", p + "tcn"], [p + "h"]),
        ]
        h, c = p + "h", p + "cn"
    nodes.append(node("Identity", [h], ["out"]))
    graph = helper.make_graph(
        nodes, REFERENCE_VERSION + "-int8",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, INT8_STEPS, WIDTH])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, HIDDEN])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])  # Split num_outputs: opset 18
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def reference_int8_input() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((1, INT8_STEPS, WIDTH)).astype(np.float32)


def torch_reference(threads: int | None = None, size: str = "small"):
    """The same block in PyTorch eager; returns a zero-argument callable that runs it once."""
    if threads:
        torch.set_num_threads(threads)
    _, WIDTH, HIDDEN = SIZES[size]  # noqa: N806
    wts = {k: torch.from_numpy(v) for k, v in _weights(size=size).items()}
    lstm = torch.nn.LSTM(WIDTH, HIDDEN, bidirectional=True, bias=False)
    with torch.no_grad():
        # ONNX gate order is i,o,f,c and torch's i,f,g,o: irrelevant for speed, so copy as is.
        lstm.weight_ih_l0.copy_(wts["lstm_w"][0]); lstm.weight_hh_l0.copy_(wts["lstm_r"][0])
        lstm.weight_ih_l0_reverse.copy_(wts["lstm_w"][1]); lstm.weight_hh_l0_reverse.copy_(wts["lstm_r"][1])
    lstm.eval()
    x = torch.from_numpy(reference_input(size=size))
    scale = 1.0 / WIDTH ** 0.5

    @torch.no_grad()
    def run():
        q, k, v = x @ wts["wq"], x @ wts["wk"], x @ wts["wv"]
        h1 = x + torch.softmax((q @ k.transpose(1, 2)) * scale, dim=-1) @ v
        h2 = h1 + torch.relu(h1 @ wts["w1"]) @ wts["w2"]
        y, _ = lstm(h2.transpose(0, 1))
        return y @ wts["w_out"]

    return run


# --- the machine's compute bound ----------------------------------------------------------------------------

MATMUL_N = 512  # large enough to reach the GEMM kernels' steady speed, small enough to time in ~0.3 s


def matmul_macs_per_s(kind: str, threads: int, workdir=None) -> float:
    """Measured float32 MatMul throughput (MACs per second) of `kind` ('onnxruntime' | 'torch') at `threads`.

    A model's MACs divided by this is its compute bound: the latency it would have if all of it ran at GEMM
    speed. latency / bound says how far from that the model is (recurrence, small ops and memory traffic).
    """
    n = MATMUL_N
    a = np.random.default_rng(2).standard_normal((n, n)).astype(np.float32)
    if kind == "torch":
        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(a.T.copy())
        work = lambda: torch.mm(ta, tb)  # noqa: E731
    else:
        TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper  # noqa: N806
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [numpy_helper.from_array(a.T.copy(), "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        path = Path(workdir or tempfile.mkdtemp(prefix="fog-bench-")) / "matmul.onnx"
        onnx.save(model, str(path))
        engine = onnxruntime_engine(path, threads)
        work = lambda: engine.infer(a)  # noqa: E731
    timing = interleaved({"matmul": work}, blocks=5, block_s=0.05)["matmul"]
    return n ** 3 / min(timing.block_medians)  # the best block: the bound, not the noise
