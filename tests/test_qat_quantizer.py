"""TensorQuantizer: modes, calibration hook, learnable amax, and the Q/DQ it exports (INT8 zero points, axis 0)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.onnx_export import export_onnx
from models.qat import QuantLinear, TensorQuantizer, calibrate_max, quantizers, set_quantization, to_qat

onnx = pytest.importorskip("onnx")


def test_disabled_is_identity_and_calibrating_records_max_and_calls_collector():
    q = TensorQuantizer()
    x = torch.tensor([0.5, -3.0, 1.0])
    assert torch.equal(q(x), x)
    seen = []
    q.collector = seen.append
    q.set_mode("calibrating")
    assert torch.equal(q(x), x)
    q(torch.tensor([2.0]))
    assert q.calib_amax.item() == 3.0 and len(seen) == 2 and torch.equal(seen[0], x)
    q.load_calibration()
    assert q.amax.item() == 3.0 and q.scale.item() == pytest.approx(3.0 / 127)
    with pytest.raises(ValueError, match="unknown quantizer mode"):
        q.set_mode("on")


def test_quantizing_rounds_to_the_int8_grid_and_clips():
    q = TensorQuantizer()
    q.load_calibration(1.27)          # scale 0.01
    q.set_mode("quantizing")
    y = q(torch.tensor([0.123, -0.0049, 5.0, -5.0]))
    assert torch.allclose(y, torch.tensor([0.12, 0.0, 1.27, -1.28]), atol=1e-6)


def test_per_channel_weight_quantizer_uses_one_scale_per_output_row():
    q = TensorQuantizer(channels=2)
    w = torch.tensor([[1.0, 0.5], [100.0, 1.0]])
    q.set_mode("calibrating")
    q(w)
    q.load_calibration()
    assert torch.equal(q.amax, torch.tensor([1.0, 100.0]))
    q.set_mode("quantizing")
    # Row 0 keeps fine resolution although row 1 is 100x larger.
    assert abs(q(w)[0, 1].item() - 0.5) < 1.0 / 127


def test_straight_through_gradient_and_learnable_amax():
    q = TensorQuantizer(learn_amax=True)
    q.load_calibration(1.0)
    assert isinstance(q.amax, torch.nn.Parameter)
    q.set_mode("quantizing")
    q.train()
    x = torch.tensor([0.3, 2.0], requires_grad=True)
    q(x).sum().backward()
    assert x.grad[0].item() == pytest.approx(1.0)           # inside the range: gradient passes
    assert x.grad[1].item() == 0.0                          # clipped: none
    assert q.amax.grad is not None and q.amax.grad.item() != 0.0


def test_set_quantization_refuses_uncalibrated_quantizers():
    layer = to_qat(torch.nn.Linear(3, 2), 1, 1)
    with pytest.raises(ValueError, match="no calibrated amax"):
        set_quantization(layer, True)


def test_export_gives_int8_zero_points_and_axis0_weight_scales(tmp_path):
    torch.manual_seed(0)
    layer = to_qat(torch.nn.Linear(5, 4), 2, 1)
    assert isinstance(layer, QuantLinear) and set(quantizers(layer)) == {"input_quantizer", "weight_quantizer"}
    calibrate_max(layer, [torch.randn(2, 5)])
    model = onnx.load(export_onnx(layer, torch.randn(2, 5), tmp_path / "lin.onnx", opset=13))
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            arrays[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) == 4
    for node in qdq:
        assert len(node.input) == 3
        zero = arrays[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any()
    scales = sorted((arrays[n.input[1]].shape, [a.i for a in n.attribute if a.name == "axis"]) for n in qdq)
    assert scales == [((), []), ((), []), ((4,), [0]), ((4,), [0])]
