"""Numerical verification of exported graphs: PyTorch against ONNX Runtime, on held-out windows.

The thresholds are data (`THRESHOLDS`) and travel into the manifest with the measured figures, so a reader can see
how close each pair came. Probabilities are compared (the bundle's output), never logits.
"""
from __future__ import annotations


import numpy as np

from deploy.errors import FogError

# Pair name -> limits on |a - b| over every output element of every verification window.
THRESHOLDS = {
    # Same graph semantics, float arithmetic on both sides: only rounding and op-order differences.
    "torch_vs_ort_fp32": {"max_abs": 1e-4, "mean_abs": 1e-5},
    # The QAT model with fake quantization on, against its Q/DQ export: the same integer grid on both sides,
    # but an input sitting on a rounding boundary may land one step apart.
    "torch_qat_vs_ort_int8": {"max_abs": 0.05, "mean_abs": 2e-3},
    # The float model against the INT8 model: the quantization error itself.
    "torch_vs_ort_int8": {"max_abs": 0.25, "mean_abs": 0.03},
}


class VerificationError(FogError):
    """An exported model disagrees with PyTorch beyond the thresholds."""


def ort_session(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_run(path_or_session, batches: list[np.ndarray]) -> np.ndarray:
    sess = ort_session(path_or_session) if not hasattr(path_or_session, "run") else path_or_session
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: b})[0] for b in batches])


def torch_run(module, batches: list[np.ndarray]) -> np.ndarray:
    import torch
    module.eval()
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(b)).numpy() for b in batches])


def torch_run_fixed(module, batches: list[np.ndarray], fixed: int) -> np.ndarray:
    """Run windows through a module that takes exactly `fixed` windows per call (a QAT variant), padding the last
    call with copies of its last window; returns one output per input window, in order."""
    import torch
    x = np.concatenate(batches)
    outputs = []
    module.eval()
    with torch.no_grad():
        for start in range(0, len(x), fixed):
            chunk = x[start:start + fixed]
            n = len(chunk)
            if n < fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
            outputs.append(module(torch.from_numpy(chunk)).numpy()[:n])
    return np.concatenate(outputs)


def compare(name: str, a: np.ndarray, b: np.ndarray, thresholds: dict | None = None) -> dict:
    limits = (thresholds or THRESHOLDS)[name]
    if a.shape != b.shape:
        return {"max_abs": None, "mean_abs": None, "threshold": limits, "passed": False,
                "detail": f"shapes differ: {a.shape} vs {b.shape}"}
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    max_abs, mean_abs = float(diff.max()), float(diff.mean())
    passed = bool(max_abs <= limits["max_abs"] and mean_abs <= limits["mean_abs"])
    return {"max_abs": max_abs, "mean_abs": mean_abs, "threshold": dict(limits), "passed": passed}


def assert_verified(pairs: dict) -> None:
    failed = {k: v for k, v in pairs.items() if not v["passed"]}
    if failed:
        lines = "\n  - ".join(
            f"{k}: max |diff| {v['max_abs']}, mean {v['mean_abs']} (limits {v['threshold']})"
            + (f"; {v['detail']}" if v.get("detail") else "") for k, v in failed.items())
        raise VerificationError("numerical verification failed, the bundle was not written:\n  - " + lines
                                + "\nCheck the calibration windows (--calib-windows) or use --precision fp32/fp16.")


def make_windows(preprocess: dict, count: int, batch: int, seed: int) -> list[np.ndarray]:
    """`count` windows (rounded up to whole batches) in model layout, from synthetic FOG recordings.

    The recordings come from `deploy.synth` and go through `deploy.preprocess` exactly as the daemon's input does
    (units, resampling, normalization, patching). Different seeds give different recordings: calibration uses one
    seed, verification another (held out).
    """
    from deploy.preprocess import PreprocessSpec, patchify, prepare
    from deploy.synth import synth_recording

    spec = PreprocessSpec.from_dict(preprocess)
    n_windows = max(1, -(-count // batch)) * batch
    rng = np.random.default_rng(seed)
    minutes = max(1.0, 2.0 * n_windows * spec.window_s / 60.0)
    signal = prepare(synth_recording(minutes=minutes, seed=1000 + seed, rate_hz=spec.rate_hz, units=spec.units),
                     spec)
    starts = np.sort(rng.integers(0, len(signal) - spec.window, size=n_windows))
    model_in = patchify(np.stack([signal[s:s + spec.window] for s in starts]), spec)
    return [model_in[i:i + batch] for i in range(0, n_windows, batch)]
