"""One way to turn a module into ONNX, used by tests, QAT variants and `toolkit export`.

Static shapes only (no dynamic axes): TensorRT on DLA and unrolled QAT graphs need them. The TorchScript exporter
(`dynamo=False`) is used because it emits Q/DQ for fake-quant ops with explicit zero points and reaches opset 13/14,
which the older Jetson TensorRT versions need.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch


@contextlib.contextmanager
def _export_mode(model: torch.nn.Module):
    # The MHA fast path emits aten::_transformer_encoder_layer_fwd, which has no ONNX form.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    was_training = model.training
    torch.backends.mha.set_fastpath_enabled(False)
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)


def export_onnx(model: torch.nn.Module, example, path, *, opset: int = 17,
                input_names=("x",), output_names=("logits",), constant_folding: bool = True) -> Path:
    """Export `model` at the static shape of `example` (a tensor or tuple of tensors) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = example if isinstance(example, tuple) else (example,)
    with _export_mode(model):
        torch.onnx.export(model, args, str(path), opset_version=opset, dynamo=False,
                          input_names=list(input_names), output_names=list(output_names),
                          do_constant_folding=constant_folding)
    return path
