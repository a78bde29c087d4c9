"""What one LSTM direction costs per step on this CPU, FP32 against onnxruntime's int8 LSTM, across hidden widths.

At batch 1 every step is a matrix-vector product over the whole recurrent weight matrix R (4H x H), so the step's
time follows R's bytes; the last column is that rate (int8 R bytes per second). It tells a user designing a model
what a wider recurrence costs on the device's CPU (fog-1st-place's second BiLSTM is 648 wide: 1.68 MB of int8 R per
direction, read at each of 864 steps). On the project's 2-core EPYC the int8 rate stayed at 35-38 GB/s per core
from H=256 (R inside the 512 KB L2) to H=648 (R in L3): the kernel's own pace, not a cache edge (docs/bench.md).
One forward LSTM over --steps steps with a small input (so the input projection, one GEMM for all steps, stays
negligible), at --threads intra-op threads, each file quantized by onnxruntime.quantization.quantize_dynamic (int8
weights per channel, as the cpu target's dynamic plan does).

  PYTHONPATH=$PWD python benchmarks/recurrence_widths.py --widths 128,256,324,456,648
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from deploy.engines.session import SessionSettings, open_session


def lstm_file(path: Path, steps: int, inputs: int, hidden: int) -> Path:
    rng = np.random.default_rng(0)
    weights = {"W": (1, 4 * hidden, inputs), "R": (1, 4 * hidden, hidden)}
    tensors = [numpy_helper.from_array((0.05 * rng.standard_normal(shape)).astype(np.float32), name)
               for name, shape in weights.items()]
    tensors.append(numpy_helper.from_array(np.zeros((1, 8 * hidden), np.float32), "B"))
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], hidden_size=hidden)], "one-direction",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [steps, 1, 1, hidden])], tensors)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def median_ms(path: Path, x: np.ndarray, threads: int, calls: int) -> float:
    session = open_session(path, SessionSettings(threads=threads))
    for _ in range(3):
        session.run(None, {"x": x})
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="128,256,324,456,648", help="hidden sizes (comma list)")
    parser.add_argument("--steps", type=int, default=864)
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=15)
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)   # quantize_dynamic's advice to pre-process, once per file
    x = np.random.default_rng(1).standard_normal((args.steps, 1, args.inputs)).astype(np.float32)
    print(f"one LSTM direction, {args.steps} steps, input {args.inputs}, {args.threads} thread(s), batch 1")
    print(f"{'H':>5s} {'R fp32 MB':>10s} {'fp32 us/step':>13s} {'R int8 MB':>10s} {'int8 us/step':>13s} "
          f"{'int8 GB/s':>10s}")
    with tempfile.TemporaryDirectory() as work:
        for hidden in (int(h) for h in args.widths.split(",")):
            fp32 = lstm_file(Path(work) / f"lstm{hidden}.onnx", args.steps, args.inputs, hidden)
            int8 = Path(work) / f"lstm{hidden}.int8.onnx"
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
            per_step = {name: 1e3 * median_ms(path, x, args.threads, args.calls) / args.steps
                        for name, path in (("fp32", fp32), ("int8", int8))}
            r_int8 = 4 * hidden * hidden
            print(f"{hidden:5d} {4 * r_int8 / 1e6:10.2f} {per_step['fp32']:13.1f} {r_int8 / 1e6:10.2f} "
                  f"{per_step['int8']:13.1f} {r_int8 / per_step['int8'] / 1e3:10.1f}", flush=True)


if __name__ == "__main__":
    main()
