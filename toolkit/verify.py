"""Numerical verification of exported graphs: PyTorch against ONNX Runtime, on held-out windows.

The thresholds are data (`THRESHOLDS`) and travel into the manifest with the measured figures, so a reader can see
how close each pair came. Probabilities are compared (the bundle's output), never logits.
"""
from __future__ import annotations

import time

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


def median_latency_ms(path, example: np.ndarray, runs: int = 20, warmup: int = 3) -> float:
    """Median single-batch latency of an ONNX model on this machine's ONNX Runtime CPU provider."""
    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: example})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, {name: example})
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _gait_like(rng: np.random.Generator, n: int, rate_hz: float) -> np.ndarray:
    """(n, 3) accelerometer-like signal: a walking rhythm, sometimes a 3-8 Hz trembling burst, and noise."""
    t = np.arange(n) / rate_hz
    step_hz = rng.uniform(0.8, 2.2)
    sig = np.stack([rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * step_hz * k * t + rng.uniform(0, 6.3))
                    for k in (1, 2, 1)], axis=1)
    if rng.random() < 0.5:  # a freeze-like burst somewhere in the window
        start, length = rng.integers(0, n // 2), rng.integers(n // 8, n // 2)
        burst = 0.3 * np.sin(2 * np.pi * rng.uniform(3, 8) * t[: min(length, n - start)])
        sig[start:start + len(burst)] += burst[:, None] * rng.uniform(0.3, 1.0, size=3)
    sig += rng.normal(0, 0.05, size=sig.shape)
    sig[:, 0] += 1.0  # gravity on the vertical axis, in g
    return sig


def to_model_input(windows: np.ndarray, preprocess: dict) -> np.ndarray:
    """(B, window, 3) -> the model layout of the I/O contract; deploy.preprocess.patchify when present."""
    try:
        from deploy.preprocess import PreprocessSpec, patchify
    except ImportError:
        PreprocessSpec = None
    if PreprocessSpec is not None:
        return np.ascontiguousarray(patchify(windows, PreprocessSpec.from_dict(preprocess)), dtype=np.float32)
    patch, n = int(preprocess["patch"]), int(preprocess["n_patches"])
    patches = windows.reshape(len(windows), n, patch * 3)  # features interleaved [v0, ml0, ap0, v1, ...]
    if preprocess.get("layout", "BCT") == "BCT":
        patches = patches.transpose(0, 2, 1)
    return np.ascontiguousarray(patches, dtype=np.float32)


def make_windows(preprocess: dict, count: int, batch: int, seed: int) -> list[np.ndarray]:
    """`count` windows (rounded up to whole batches) in model layout, normalized per window.

    Different seeds give disjoint material: calibration uses one, verification another (held out).
    """
    rng = np.random.default_rng(seed)
    window = int(preprocess["patch"]) * int(preprocess["n_patches"])
    rate = float(preprocess.get("rate_hz", 100.0))
    n_batches = max(1, -(-count // batch))
    raw = np.stack([_gait_like(rng, window, rate) for _ in range(n_batches * batch)])
    raw = (raw - raw.mean(axis=1, keepdims=True)) / (raw.std(axis=1, keepdims=True) + 1e-6)
    model_in = to_model_input(raw.astype(np.float32), preprocess)
    return [model_in[i * batch:(i + 1) * batch] for i in range(n_batches)]
