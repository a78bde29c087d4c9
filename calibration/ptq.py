"""Post-training quantization: calibrate the quantizers of a QAT variant, and measure what INT8 costs.

`calibrate(qat_model, reader, method)` runs the reader's windows through the variant once with every quantizer
in calibration mode. Activation quantizers (per tensor) feed a histogram calibrator of the chosen method;
weight quantizers (per channel) take their per-channel max, as TensorRT expects for weights. The ranges are
written into the quantizers (`load_calibration`) and returned as a `CalibrationCache` that can be saved and
applied again later (`apply_cache`) without the data.

A quantizer that no window reaches (e.g. the hidden-state quantizer of a recurrence that runs a single step, as a
tsai_compat model does at batch 1: the first step has no recurrent MatMul) is inert at that shape: it emits no Q/DQ.
It gets the placeholder range `UNUSED_AMAX` and is listed in the cache's `unused`; `active_quantizers` tells which
quantizers a forward at the export shape uses, so an exporter can refuse a placeholder that would reach a graph.

`agreement(float_model, int8_model, windows)` compares the two on held-out windows: AP per class against the
labels for both, and the maximum and mean absolute difference of their probabilities.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from calibration import progress as bars
from calibration.cache import CalibrationCache, CalibrationCacheError, model_hash
from calibration.calibrators import DEFAULT_METHOD, make_calibrator
from deploy.errors import FogError
from deploy.metrics import average_precision
from models.qat import quantizers, set_calibration

# The range of a quantizer no calibration window reached. Any positive value is exact for an inert quantizer; 1.0 is
# the span of the bounded states (tanh/sigmoid) where such quantizers sit, so the placeholder is sensible, not 1e-8.
UNUSED_AMAX = 1.0


# Values one call hands a histogram calibrator at most: a larger tensor (fog-1st-place's attention maps, 6 heads x
# 864 x 864 per window) is read with a stride. The running max (amax of max calibration, and the histogram's range
# check) still sees every value; a percentile/entropy/MSE search over millions of samples does not move.
MAX_HISTOGRAM_VALUES = 1 << 22


def _sample(x):
    flat = x.detach().float().reshape(-1)
    stride = -(-flat.numel() // MAX_HISTOGRAM_VALUES)
    if stride > 1:
        top = flat.abs().max()
        flat = torch.cat([flat[::stride], top.reshape(1)])  # the largest value is kept: the range stays exact
    return flat.cpu().numpy()


def calibrate(qat_model, reader, method: str = DEFAULT_METHOD, *, options: dict | None = None,
              preset: str | None = None, progress: bool = True) -> CalibrationCache:
    """Calibrate every quantizer of `qat_model` on the batches of `reader`; quantization is left OFF.
    Quantizers no window reached get UNUSED_AMAX and are listed in the cache's `unused`."""
    named = quantizers(qat_model)
    if not named:
        raise CalibrationCacheError("the model has no quantizers: convert it with models.qat.to_qat first")
    calibrators = {}
    for name, q in named.items():
        if q.axis is None and method != "max":
            calibrators[name] = make_calibrator(method, **(options or {}))
            q.collector = lambda x, c=calibrators[name]: c.collect(_sample(x))
    was_training = qat_model.training
    qat_model.eval()
    set_calibration(qat_model, True)
    try:
        with _recording_calls(named) as reached:
            windows = _run_reader(qat_model, reader, progress)
    finally:
        for q in named.values():
            q.collector = None
        set_calibration(qat_model, False)      # fixes amax = running max for every quantizer
        qat_model.train(was_training)
    if windows == 0:
        raise CalibrationCacheError("the calibration reader yielded no windows: give it recordings")
    amax, unused = {}, sorted(set(named) - reached)
    for name, q in named.items():
        if name in unused:
            q.load_calibration(torch.full_like(q.amax, UNUSED_AMAX))
        elif name in calibrators:
            q.load_calibration(max(calibrators[name].compute_amax(), 1e-8))
        amax[name] = _to_json(q.amax)
    describe = make_calibrator(method, **(options or {})).describe()
    data = dict(getattr(reader, "describe", lambda: {})(), windows=windows)
    cache = CalibrationCache(amax=amax, calibrator=describe, data=data, model_hash=model_hash(qat_model),
                             preset=preset, unused=unused)
    # Not saved with the cache: what `toolkit calibrate --plot` draws (each activation's |x| histogram and its range).
    cache.histograms = {name: (c.histogram.counts.copy(), c.histogram.edges, float(q.amax.max()))
                        for name, c in calibrators.items() if name not in unused for q in [named[name]]}
    return cache


def _run_reader(qat_model, reader, progress: bool) -> int:
    """Every batch of `reader` through the model once; returns the number of windows. The bar's total is the
    reader's window count (batches in memory), so it shows rate and ETA."""
    windows = 0
    reader.rewind()
    batches = getattr(reader, "batches", None)
    total = sum(len(b) for b in batches) if batches is not None else None
    with torch.no_grad(), bars.bar(total, "calibrate", unit="window", enabled=progress) as bar:
        while (batch := reader.get_next()) is not None:
            x = torch.as_tensor(next(iter(batch.values())), dtype=torch.float32)
            _forward_fixed_batch(qat_model, x)
            windows += x.shape[0]
            bar.update(x.shape[0])
    return windows


@contextlib.contextmanager
def _recording_calls(named: dict):
    """Yields a set that fills with the names of the quantizers called while the block runs."""
    reached: set[str] = set()
    hooks = [q.register_forward_pre_hook(lambda module, args, name=name: reached.add(name))
             for name, q in named.items()]
    try:
        yield reached
    finally:
        for hook in hooks:
            hook.remove()


def active_quantizers(qat_model, shape) -> set[str]:
    """Names of the quantizers one forward of `qat_model` at input `shape` calls (control flow depends on the
    shape only, so a zero input tells)."""
    was_training = qat_model.training
    qat_model.eval()
    try:
        with _recording_calls(quantizers(qat_model)) as reached, torch.no_grad():
            qat_model(torch.zeros(tuple(shape)))
    finally:
        qat_model.train(was_training)
    return set(reached)


def apply_cache(qat_model, cache: CalibrationCache, check_model: bool = True) -> None:
    """Load the ranges of `cache` into the quantizers of `qat_model` (quantization is left as it was)."""
    if check_model:
        cache.check_model(qat_model)
    named = quantizers(qat_model)
    missing = sorted(set(named) - set(cache.amax))
    extra = sorted(set(cache.amax) - set(named))
    if missing or extra:
        raise CalibrationCacheError(
            f"calibration cache does not fit this model (missing {missing[:3]}, unknown {extra[:3]}): "
            "recalibrate for this model")
    for name, q in named.items():
        q.load_calibration(torch.as_tensor(cache.amax[name], dtype=torch.float32))


def learnt_ranges(qat_model, initial: CalibrationCache, fine_tuned_on: dict) -> CalibrationCache:
    """The ranges a QAT fine-tuning ends with, as a cache: tied (`model_hash`) to the fine-tuned float weights, saying
    how the initial ranges were calibrated (`initial`) and what the fine-tuning trained on (`fine_tuned_on`)."""
    amax = {name: _to_json(q.amax) for name, q in quantizers(qat_model).items()}
    return CalibrationCache(amax=amax, calibrator=initial.calibrator,
                            data={**initial.data, "fine_tuned_on": fine_tuned_on}, model_hash=model_hash(qat_model),
                            preset=initial.preset, unused=list(initial.unused))


def _to_json(amax: torch.Tensor):
    values = amax.detach().cpu().float()
    return float(values) if values.dim() == 0 else [float(v) for v in values]


def _forward_fixed_batch(model, x: torch.Tensor) -> torch.Tensor:
    """Run `x` through a model that may only take a fixed batch (a QAT variant): pad and split."""
    fixed = getattr(model, "qat_batch_size", None)
    if not fixed or x.shape[0] == fixed:
        return model(x)
    outputs = []
    for start in range(0, x.shape[0], fixed):
        chunk = x[start:start + fixed]
        n = chunk.shape[0]
        if n < fixed:
            chunk = torch.cat([chunk, chunk[-1:].expand(fixed - n, *chunk.shape[1:])])
        outputs.append(model(chunk)[:n])
    return torch.cat(outputs)


@torch.no_grad()
def predict_probs(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Sigmoid probabilities (N, n_patches, C) for model inputs `x`, in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        chunk = torch.as_tensor(x[start:start + batch_size], dtype=torch.float32)
        out.append(torch.sigmoid(_forward_fixed_batch(model, chunk)).numpy())
    model.train(was_training)
    return np.concatenate(out)


def agreement(float_model, int8_model, windows, classes=None, *, spec=None, count: int = 64, seed: int = 0) -> dict:
    """Float vs INT8: AP per class (where there are labels) and the probability error, on `windows`: a
    `calibration.data.WindowSet`, recordings (with the model's preprocess `spec`: `count` labelled windows are drawn
    from them, seeded), or model inputs as an array or tensor (N, *input shape; no labels: the error only)."""
    windows = _as_windows(windows, spec, count, seed)
    p_float = predict_probs(float_model, windows.x)
    p_int8 = predict_probs(int8_model, windows.x)
    diff = np.abs(p_float - p_int8)
    report = {"windows": int(len(windows.x)), "max_abs_prob_error": float(diff.max()),
              "mean_abs_prob_error": float(diff.mean())}
    if windows.labels is not None:
        classes = list(classes or range(p_float.shape[-1]))
        for tag, probs in (("float", p_float), ("int8", p_int8)):
            ap = {}
            for c, name in enumerate(classes):
                keep = windows.mask[..., c].ravel() > 0
                y = windows.labels[..., c].ravel()[keep]
                ap[str(name)] = float(average_precision(y, probs[..., c].ravel()[keep])) if y.any() else None
            scored = [v for v in ap.values() if v is not None]
            report[f"ap_{tag}"] = ap
            report[f"map_{tag}"] = float(np.mean(scored)) if scored else None
        if report["map_float"] is not None:
            report["map_drop"] = report["map_float"] - report["map_int8"]
    return report


def _as_windows(windows, spec, count: int, seed: int):
    """A WindowSet for `agreement` from what a user has at hand (see there)."""
    from calibration.data import PreparedRecording, WindowSet, prepare_recording, sample_windows
    if isinstance(windows, WindowSet):
        return windows
    if isinstance(windows, (list, tuple)) and windows and hasattr(windows[0], "acc"):
        if spec is None:
            raise FogError("agreement on recordings needs the model's preprocess: agreement(..., "
                           "spec=preset.preprocess)")
        prepared = [r if isinstance(r, PreparedRecording) else prepare_recording(r, spec) for r in windows]
        return sample_windows(prepared, spec, count, seed)
    x = windows.detach().cpu().numpy() if isinstance(windows, torch.Tensor) else np.asarray(windows, np.float32)
    return WindowSet(x=x.astype(np.float32), labels=None, mask=None, origin=[])
