"""Quantization-aware (QAT) variants of the zoo: quantized GEMMs, static unrolled recurrence, static attention.

Typical use::

    qat = to_qat(model, batch_size=1, seq_len=128)   # quantizers start disabled: qat == model
    calibrate_max(qat, windows)                      # or set_calibration(qat, True/False) around your own loop
    export_onnx(qat, example, "model_int8_qdq.onnx") # Q/DQ ONNX for TensorRT explicit quantization

See docs/qat.md.
"""
from .convert import calibrate_max, quantizers, set_calibration, set_quantization, to_qat
from .layers import QuantLinear, QuantMatMul
from .quantizer import TensorQuantizer
from .unrolled import UnrolledGRU, UnrolledLSTM, UnrolledRNN

__all__ = ["to_qat", "quantizers", "set_quantization", "set_calibration", "calibrate_max", "TensorQuantizer",
           "QuantLinear", "QuantMatMul", "UnrolledLSTM", "UnrolledGRU", "UnrolledRNN"]
