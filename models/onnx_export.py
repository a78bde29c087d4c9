"""One way to turn a module into ONNX, used by tests, QAT variants and `toolkit export`.

Static shapes only (no dynamic axes): TensorRT on DLA and unrolled QAT graphs need them. The TorchScript exporter
(`dynamo=False`) is used because it emits Q/DQ for fake-quant ops with explicit zero points and reaches opset 13/14,
which the older Jetson TensorRT versions need.

The exporter's native log is silenced: torch's TorchScript exporter switches its ONNX log on for good on the first
export (its `setup_onnx_logging` tests the function `_jit_is_onnx_log_enabled` instead of calling it), and from then
on an export that fails prints the whole Torch IR graph (68 KB for fog-small) to the process's stdout from C++, e.g.
the first attempt of a jetson-nano export, which then succeeds through the static variant. An export that fails
raises; what it printed natively is dropped.
"""
from __future__ import annotations

import contextlib
import os
import sys
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


@contextlib.contextmanager
def _native_output_dropped():
    """Point file descriptors 1 and 2 at /dev/null while the block runs (C++ writes bypass sys.stdout/stderr)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(fd) for fd in (1, 2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(null, fd)
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


def export_onnx(model: torch.nn.Module, example, path, *, opset: int = 17,
                input_names=("x",), output_names=("logits",), constant_folding: bool = True,
                dynamic_batch: bool = False) -> Path:
    """Export `model` at the static shape of `example` (a tensor or tuple of tensors) to `path`; `dynamic_batch`:
    the first axis of every input and output is left dynamic ("batch"), for a TensorRT optimization profile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = example if isinstance(example, tuple) else (example,)
    with _export_mode(model), _native_output_dropped():
        torch.onnx.export(model, args, str(path), opset_version=opset, dynamo=False,
                          input_names=list(input_names), output_names=list(output_names),
                          do_constant_folding=constant_folding,
                          dynamic_axes={name: {0: "batch"} for name in (*input_names, *output_names)}
                          if dynamic_batch else None)
    return path
