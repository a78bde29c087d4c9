"""to_qat: a float zoo model -> its quantization-aware, statically unrolled twin (by module replacement).

The parent modules keep their own forward; only leaves that TensorRT cannot quantize as they are get swapped:
nn.Linear -> QuantLinear, nn.LSTM/GRU/RNN -> Unrolled*, SCRN -> UnrolledSCRN, nn.TransformerEncoder(Layer) ->
static encoder, TSTMultiHeadAttention -> its static quantized version. Parameter names are kept, so the float
state_dict loads into the variant (`strict=False`: the variant adds quantizer buffers). LayerNorm/BatchNorm and
activations stay float. With quantizers disabled (the state right after conversion) the variant computes what the
float model computes.

`recurrence="fused"` keeps nn.LSTM/GRU/RNN as they are (one ONNX LSTM/GRU/RNN node each, never quantized): the
precision plan of a large hybrid for TensorRT, where the unrolled graph would have tens of thousands of nodes. SCRN
has no ONNX op and is unrolled either way.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .attention import StaticEncoder, StaticEncoderLayer
from .layers import QuantLinear
from .quantizer import TensorQuantizer
from .unrolled import UnrolledGRU, UnrolledLSTM, UnrolledRNN


def _zoo_converters() -> dict[str, callable]:
    """Converters for zoo classes, matched by class name so models/qat does not import half-written files."""
    from . import tst_attention, unrolled_scrn
    return {"TSTMultiHeadAttention": tst_attention.StaticTSTAttention,
            "SCRN": unrolled_scrn.UnrolledSCRN}


RECURRENCES = ("unrolled", "fused")
_FUSED = (nn.LSTM, nn.GRU, nn.RNN)


def _convert_child(module: nn.Module, recurrence: str = "unrolled") -> nn.Module | None:
    """The replacement for `module` (itself when it stays as it is), or None to recurse into it."""
    if recurrence == "fused" and isinstance(module, _FUSED):
        return module
    if isinstance(module, nn.TransformerEncoder):
        return StaticEncoder(module, nn.ModuleList(StaticEncoderLayer(layer) for layer in module.layers))
    if isinstance(module, nn.TransformerEncoderLayer):
        return StaticEncoderLayer(module)
    if isinstance(module, nn.LSTM):
        return UnrolledLSTM(module)
    if isinstance(module, nn.GRU):
        return UnrolledGRU(module)
    if isinstance(module, nn.RNN):
        return UnrolledRNN(module)
    if isinstance(module, nn.MultiheadAttention):
        raise ValueError("to_qat converts nn.MultiheadAttention only inside nn.TransformerEncoderLayer")
    if isinstance(module, nn.Linear):
        return QuantLinear.from_float(module)
    converter = _zoo_converters().get(type(module).__name__)
    return converter(module) if converter is not None else None


def _replace(module: nn.Module, recurrence: str) -> None:
    for name, child in list(module.named_children()):
        replacement = _convert_child(child, recurrence)
        if replacement is None:
            _replace(child, recurrence)
        else:
            setattr(module, name, replacement)


def to_qat(model: nn.Module, batch_size: int, seq_len: int, recurrence: str = "unrolled") -> nn.Module:
    """A deep copy of `model` with quantized GEMMs and statically unrolled (or, `recurrence="fused"`, float fused)
    recurrence.

    `batch_size` and `seq_len` are the static input shape the variant is meant for; they are recorded on the
    variant (`qat_input_shape`) for export. All quantizers start disabled: calibrate, then enable.
    """
    if recurrence not in RECURRENCES:
        raise ValueError(f"recurrence {recurrence!r}: choose one of {RECURRENCES}")
    qat = copy.deepcopy(model)
    replacement = _convert_child(qat, recurrence)
    if replacement is not None:
        qat = replacement
    else:
        _replace(qat, recurrence)
    qat.qat_batch_size, qat.qat_seq_len, qat.qat_recurrence = int(batch_size), int(seq_len), recurrence
    return qat


def quantizers(model: nn.Module) -> dict[str, TensorQuantizer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, TensorQuantizer)}


def set_quantization(model: nn.Module, enabled: bool) -> None:
    """Turn fake quantization on (every quantizer must have a calibrated amax) or off."""
    for name, q in quantizers(model).items():
        if enabled and not bool((q.amax > 0).all()):
            raise ValueError(f"quantizer {name} has no calibrated amax; run set_calibration(model, True), feed "
                             "calibration windows, then set_calibration(model, False)")
        q.set_mode("quantizing" if enabled else "disabled")


def set_calibration(model: nn.Module, collect: bool) -> None:
    """collect=True: reset and start collecting running maxima. collect=False: fix amax from them (max
    calibration) and leave quantizers disabled; call set_quantization(model, True) to fake-quantize."""
    for q in quantizers(model).values():
        if collect:
            q.calib_amax.zero_()
            q.set_mode("calibrating")
        else:
            if q.mode == "calibrating":
                q.load_calibration()
            q.set_mode("disabled")


@torch.no_grad()
def calibrate_max(model: nn.Module, windows) -> nn.Module:
    """Max calibration, then enable quantization (tests and quick looks). `windows`: model inputs as one tensor or
    array (N, *input shape), fed in batches of the variant's static batch (`to_qat(batch_size=...)`), or an
    iterable of ready batches."""
    was_training = model.training
    model.eval()
    set_calibration(model, True)
    for x in _batches(model, windows):
        model(x)
    set_calibration(model, False)
    set_quantization(model, True)
    model.train(was_training)
    return model


def _batches(model: nn.Module, windows):
    """Batches of the variant's static batch size from a tensor/array of windows (the last one filled up with
    copies of its last window: max calibration is unchanged by repeats); an iterable of batches as it is."""
    if not isinstance(windows, torch.Tensor) and not hasattr(windows, "__array__"):
        yield from (torch.as_tensor(x) for x in windows)
        return
    windows = torch.as_tensor(windows, dtype=torch.float32)
    size = int(getattr(model, "qat_batch_size", 0) or len(windows))
    for start in range(0, len(windows), size):
        chunk = windows[start:start + size]
        if len(chunk) < size:
            chunk = torch.cat([chunk, chunk[-1:].expand(size - len(chunk), *chunk.shape[1:])])
        yield chunk
