"""QAT variants export to Q/DQ ONNX (opset 13 and 17) that passes the checker and agrees in onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from models.onnx_export import export_onnx
from models.qat import calibrate_max, to_qat
from toolkit.export.qdq import assert_qdq, check_qdq

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from deploy.engines.session import open_session  # noqa: E402

BATCH, C_IN, STEPS = 2, 6, 10


class TinyHybrid(nn.Module):
    """Channels-first input like the zoo: projection, encoder over time, BiLSTM, GRU, per-step head."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(C_IN, 16)
        self.pos = nn.Parameter(torch.randn(1, STEPS, 16) * 0.1)
        layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.lstm = nn.LSTM(16, 8, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(16, 8, batch_first=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.encoder(self.proj(x.transpose(1, 2)) + self.pos)
        x, _ = self.lstm(x)
        x, _ = self.gru(x.transpose(0, 1))
        return self.head(x.transpose(0, 1))


def smooth_windows(n: int, seed: int = 0) -> list[torch.Tensor]:
    """Random smooth signals (normalized random walks), like accelerometer patches."""
    rng = np.random.default_rng(seed)
    walks = rng.standard_normal((n, BATCH, C_IN, STEPS)).cumsum(-1)
    walks = (walks - walks.mean(-1, keepdims=True)) / (walks.std(-1, keepdims=True) + 1e-6)
    return [torch.tensor(w, dtype=torch.float32) for w in walks]


@pytest.fixture(scope="module")
def calibrated():
    torch.manual_seed(0)
    model = TinyHybrid().eval()
    qat = to_qat(model, BATCH, STEPS).eval()
    x = smooth_windows(1, seed=99)[0]
    with torch.no_grad():
        float_equal = (model(x) - qat(x)).abs().max().item()
    calibrate_max(qat, smooth_windows(4))
    return model, qat, x, float_equal


def test_disabled_variant_equals_float(calibrated):
    assert calibrated[3] <= 1e-5


@pytest.mark.parametrize("opset", [13, 17])
def test_qdq_export_passes_checker_and_agrees_in_onnxruntime(calibrated, tmp_path, opset):
    model, qat, x, _ = calibrated
    path = export_onnx(qat, x, tmp_path / f"tiny_int8_op{opset}.onnx", opset=opset)
    graph = onnx.load(path)
    ops = {n.op_type for n in graph.graph.node}
    assert check_qdq(graph) == []
    assert_qdq(path)
    assert ("LayerNormalization" in ops) == (opset >= 17)       # decomposed at 13 for TensorRT 8.5
    assert not ops & {"LSTM", "GRU", "Loop", "Scan"}
    session = open_session(str(path))
    with torch.no_grad():
        fake_quant = torch.sigmoid(qat(x)).numpy()
        float_probs = torch.sigmoid(model(x)).numpy()
    int8_probs = 1 / (1 + np.exp(-session.run(None, {"x": x.numpy()})[0]))
    assert np.abs(int8_probs - fake_quant).max() <= 1e-2
    # FP32 vs INT8: quantization moves probabilities, but not far on in-distribution windows.
    assert 0 < np.abs(int8_probs - float_probs).max() < 0.1


def test_float_export_of_the_variant_is_rejected_by_the_checker(tmp_path):
    """Quantizers disabled -> plain MatMuls: the checker must say which GEMMs lack Q/DQ."""
    torch.manual_seed(0)
    qat = to_qat(TinyHybrid().eval(), BATCH, STEPS)
    path = export_onnx(qat, smooth_windows(1)[0], tmp_path / "float.onnx", opset=17)
    problems = check_qdq(path)
    assert problems and all(p.op_type in ("MatMul", "Gemm") for p in problems)
