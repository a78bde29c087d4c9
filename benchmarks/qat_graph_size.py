"""Graph size and onnxruntime cost of an unrolled INT8 Q/DQ QAT variant (default: the 1st-place-shaped preset).

    python benchmarks/qat_graph_size.py                       # fog-1st-place, 864 steps, opset 17
    python benchmarks/qat_graph_size.py --preset fog-small --runs 20

Prints: nodes (by op type), export time, checker time and result, onnxruntime session load time, median run
time, and FP32-vs-INT8 agreement on one synthetic window. Slow for the 1st-place shape (minutes): not a unit test.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _smooth_windows(shape, n: int, seed: int = 0):
    import numpy as np
    import torch
    rng = np.random.default_rng(seed)
    walks = rng.standard_normal((n, *shape)).cumsum(-1)
    walks = (walks - walks.mean(-1, keepdims=True)) / (walks.std(-1, keepdims=True) + 1e-6)
    return [torch.tensor(w, dtype=torch.float32) for w in walks]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fog-1st-place")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calibration-windows", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="save the ONNX file here instead of a temporary directory")
    args = parser.parse_args(argv)

    import numpy as np
    import onnx
    import torch

    import models
    from deploy.engines.session import SessionSettings, open_session
    from models.onnx_export import export_onnx
    from models.qat import calibrate_max, to_qat
    from toolkit.export.qdq import check_qdq

    torch.manual_seed(0)
    model = models.create_model(args.preset).eval()
    preset = models.get_preset(args.preset)
    c_in, seq_len = preset.kwargs["c_in"], preset.kwargs["seq_len"]
    shape = (1, c_in, seq_len)
    _log(f"{args.preset}: input {shape}; converting and calibrating ({args.calibration_windows} windows)")
    qat = to_qat(model, 1, seq_len).eval()
    x = _smooth_windows(shape, 1, seed=99)[0]
    start = time.perf_counter()
    with torch.no_grad():
        float_out = model(x)
        disabled_diff = (qat(x) - float_out).abs().max().item()
    eager_s = time.perf_counter() - start
    calibrate_max(qat, _smooth_windows(shape, args.calibration_windows))

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "qat_int8.onnx"
        _log(f"exporting at opset {args.opset} to {path}")
        start = time.perf_counter()
        export_onnx(qat, x, path, opset=args.opset)
        export_s = time.perf_counter() - start
        graph = onnx.load(str(path))
        ops = collections.Counter(node.op_type for node in graph.graph.node)
        start = time.perf_counter()
        problems = check_qdq(graph)
        check_s = time.perf_counter() - start
        _log("loading in onnxruntime (CPU)")
        start = time.perf_counter()
        session = open_session(path, SessionSettings(log_severity=2))   # onnxruntime's defaults
        load_s = time.perf_counter() - start
        feed = {session.get_inputs()[0].name: x.numpy()}
        int8_out = session.run(None, feed)[0]
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
        size_mb = Path(path).stat().st_size / 1e6

    with torch.no_grad():
        fake_quant = torch.sigmoid(qat(x)).numpy()
    float_probs = torch.sigmoid(float_out).numpy()
    int8_probs = 1 / (1 + np.exp(-int8_out))
    print(f"preset                  {args.preset} (input {shape}, opset {args.opset})")
    print(f"nodes                   {len(graph.graph.node)}  ({', '.join(f'{k} {v}' for k, v in ops.most_common(8))})")
    print(f"onnx file               {size_mb:.1f} MB")
    print(f"eager float+disabled    {eager_s:.1f} s   (disabled QAT vs float max abs {disabled_diff:.2e})")
    print(f"export                  {export_s:.1f} s")
    print(f"qdq check               {check_s:.1f} s, {len(problems)} problem(s)")
    for problem in problems[:10]:
        print(f"    {problem}")
    print(f"onnxruntime load        {load_s:.1f} s")
    print(f"onnxruntime run         median {statistics.median(times) * 1e3:.0f} ms over {args.runs} runs")
    print(f"ORT INT8 vs fake-quant  max abs prob {np.abs(int8_probs - fake_quant).max():.2e}")
    print(f"ORT INT8 vs FP32 torch  max abs prob {np.abs(int8_probs - float_probs).max():.2e}, "
          f"mean {np.abs(int8_probs - float_probs).mean():.2e}")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
