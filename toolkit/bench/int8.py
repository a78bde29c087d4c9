"""The bench's own graphs of a preset, when no bundle provides them: the INT8 (explicit Q/DQ) ONNX, and the naive
baseline (what a user gets without the toolkit).

INT8: speed does not depend on how good the ranges are, so max calibration on a few random windows is enough here;
a deployable INT8 model comes from `toolkit export` with real calibration data. The graph is the one TensorRT needs,
under the export's precision plan (toolkit.export.plan, auto): explicit attention, Q/DQ on every GEMM input, the
recurrence unrolled (small models) or one fused node (large ones).

Naive: `torch.onnx.export` with its defaults (the model plus its sigmoid) into `onnxruntime.InferenceSession` with
default options; only the thread count is set when the bench sets it for every backend.
"""
from __future__ import annotations

from pathlib import Path

from deploy.engines.session import SessionSettings, open_session
from deploy.lazy import lazy_import
from toolkit.export.onnx import export_like_bundle, with_activation
from toolkit.export.plan import choose_recurrence

torch = lazy_import("torch", "workstation", "an INT8 graph for the bench")
qat = lazy_import("models.qat", "workstation", "an INT8 graph for the bench")


def export_int8(model, example, path) -> Path:
    batch, seq_len = example.shape[0], example.shape[-1]
    recurrence, _ = choose_recurrence(model, seq_len)
    variant = qat.to_qat(model, batch_size=batch, seq_len=seq_len, recurrence=recurrence).eval()
    generator = torch.Generator().manual_seed(0)
    qat.calibrate_max(variant, [torch.randn(example.shape, generator=generator) for _ in range(2)])
    return export_like_bundle(variant, example, path)


def export_naive(model, example, path) -> Path:
    """A plain `torch.onnx.export` of the model and its sigmoid: no folding, no checks, the exporter's defaults."""
    import warnings

    torch.backends.mha.set_fastpath_enabled(False)  # else the fused encoder op has no ONNX form at all
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(with_activation(model, "sigmoid"), (example,), str(path), dynamo=False)
    return Path(path)


def naive_session(path, x, threads: int | None):
    """A default onnxruntime session on the naive export; a callable running one inference."""
    session = open_session(path, SessionSettings(threads=int(threads) if threads else None))
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})
