"""Numerical verification of exported graphs: PyTorch against ONNX Runtime, on held-out windows.

The thresholds are data (`THRESHOLDS`) and travel into the manifest with the measured figures, so a reader can see
how close each pair came. Probabilities are compared (the bundle's output), never logits.
"""
from __future__ import annotations

import numpy as np

from deploy.engines.session import SessionSettings, open_session
from deploy.errors import FogError
from deploy.lazy import lazy_import

torch = lazy_import("torch", "workstation", "running the PyTorch model in verification")

# Pair name -> limits over every output element of every verification window. Every figure is measured and stored;
# only the limits a pair names gate it: max_abs / mean_abs / p99_abs on |a - b|, `agreement` = the share of
# *decisive* elements on the same side of DECISION (the detector's default on-threshold) in both. An element is
# decisive when the reference (the first of the pair, the float model) sits more than MARGIN from DECISION: a
# probability of 0.501 flipping to 0.499 is not a different decision, and with random weights nearly every
# probability sits there, so the raw agreement measures noise (it is kept as `agreement_all`, with the decisive share).
DECISION = 0.5
MARGIN = 0.05
THRESHOLDS = {
    # Same graph semantics, float arithmetic on both sides: only rounding and op-order differences.
    "torch_vs_ort_fp32": {"max_abs": 1e-4, "mean_abs": 1e-5},
    # The QAT model with fake quantization on, against its Q/DQ export run as written (`ort_session(path,
    # as_written=True)`): the same integer grid on both sides, but an input sitting on a rounding boundary may land
    # one step apart.
    "torch_qat_vs_ort_int8": {"max_abs": 0.05, "mean_abs": 2e-3},
    # The float model against the INT8 model: the quantization error itself. It is heavy-tailed per element (a steep
    # logit near 0 moves its probability most), so a pointwise max would let one of thousands of elements decide;
    # what a detector needs is a small average and tail error and the same decisions (and the model card checks mAP).
    "torch_vs_ort_int8": {"mean_abs": 0.03, "p99_abs": 0.10, "agreement": 0.98},
    # The cpu target's dynamic plan (onnxruntime quantize_dynamic) against the float model: the same error budget.
    "torch_vs_ort_int8_dynamic": {"mean_abs": 0.03, "p99_abs": 0.10, "agreement": 0.98},
}


class VerificationError(FogError):
    """An exported model disagrees with PyTorch beyond the thresholds."""


def ort_session(path, as_written: bool = False, threads: int = 1):
    """An ONNX Runtime CPU session. `as_written=True` keeps only its basic graph optimizations: the extended ones fuse
    Q/DQ pairs into integer kernels that requantize their outputs their own way (a mean |diff| of 0.003 against the
    QAT model on fog-rnn-attention, against 2e-8 as written), so comparing the export with its QAT model would
    test those kernels, not the export. `threads`: intra-op threads (the export's --threads; one by default: on a
    shared machine a second thread that has to wait for a busy core spins instead of working)."""
    settings = SessionSettings(threads=threads, optimization="basic" if as_written else "all")
    return open_session(path, settings, fix="the export wrote a graph onnxruntime cannot load: please report it")


def ort_run(path_or_session, batches: list[np.ndarray], threads: int = 1) -> np.ndarray:
    sess = ort_session(path_or_session, threads=threads) if not hasattr(path_or_session, "run") else path_or_session
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: b})[0] for b in batches])


def torch_run(module, batches: list[np.ndarray]) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(b)).numpy() for b in batches])


def torch_run_fixed(module, batches: list[np.ndarray], fixed: int) -> np.ndarray:
    """Run windows through a module that takes exactly `fixed` windows per call (a QAT variant), padding the last
    call with copies of its last window; returns one output per input window, in order."""
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
    same = (a >= DECISION) == (b >= DECISION)
    decisive = np.abs(a.astype(np.float64) - DECISION) > MARGIN
    figures = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
               "p99_abs": float(np.percentile(diff, 99)),
               "agreement": float(same[decisive].mean()) if decisive.any() else None,
               "agreement_all": float(same.mean()), "decisive_share": float(decisive.mean()), "margin": MARGIN}
    passed = all(figures[k] is None or (figures[k] >= v if k == "agreement" else figures[k] <= v)
                 for k, v in limits.items())
    return {**figures, "threshold": dict(limits), "passed": bool(passed)}


def describe(pair: dict) -> str:
    """One line for a person: every gated figure against its limit, then max |diff| for information."""
    if pair.get("detail"):
        return pair["detail"]
    gated = [f"{k} {pair[k]:.3g} ({'>=' if k == 'agreement' else '<='} {v:g})" if pair.get(k) is not None
             else f"{k} not measured (no decisive element)" for k, v in pair["threshold"].items()]
    if "agreement" in pair["threshold"] and pair.get("decisive_share") is not None:
        gated[-1] += (f" on the {pair['decisive_share']:.0%} of elements the float model decides by > "
                      f"{pair.get('margin', MARGIN):g} (all: {pair['agreement_all']:.3f})")
    extra = [f"max |diff| {pair['max_abs']:.3g}"] if "max_abs" not in pair["threshold"] else []
    return ", ".join(gated + extra) + ("  passed" if pair["passed"] else "  FAILED")


def assert_verified(pairs: dict) -> None:
    failed = {k: v for k, v in pairs.items() if not v["passed"]}
    if failed:
        lines = "\n  - ".join(f"{k}: {describe(v)}" for k, v in failed.items())
        raise VerificationError("numerical verification failed, the bundle was not written:\n  - " + lines
                                + "\nCheck the calibration windows (--calib-windows) or use --precision fp32/fp16.")

