"""The bundle's graphs as ONNX: the model plus its output activation, static shapes, constants folded.

`export_graph` is the one way a module becomes a bundle graph (input `x`, output `probs`); `export_float` adds the
fallback to the static (QAT-shaped, quantization off) variant for opsets the fused graph cannot reach;
`export_like_bundle` is the same graph for the bench, which exports presets at other batch sizes.
"""
from __future__ import annotations

from pathlib import Path

from deploy.contract import INPUT_NAME, OUTPUT_NAME
from deploy.errors import FogError
from deploy.lazy import lazy_import
from toolkit.export.checks import fold_constants

torch = lazy_import("torch", "workstation", "exporting a PyTorch model")
onnx = lazy_import("onnx", "workstation", "exporting ONNX")
onnx_export = lazy_import("models.onnx_export", "workstation", "exporting a zoo model to ONNX")
qat = lazy_import("models.qat", "workstation", "the quantization-aware variant of a model")
zoo = lazy_import("models", "workstation", "the model zoo's recurrent layers")

FUSED_RECURRENT_OPS = {"LSTM", "GRU", "RNN"}


class ExportError(FogError):
    """The model cannot be exported for the target as asked."""


def with_activation(module, activation: str):
    """The bundle's graph: the model plus its output activation, so the ONNX output is `probs`."""

    class WithActivation(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = module

        def forward(self, x):
            y = self.model(x)
            if activation == "sigmoid":
                return torch.sigmoid(y)
            if activation == "softmax":
                return torch.softmax(y, dim=-1)
            return y

    return WithActivation().eval()


def _fold_in_place(path) -> int:
    """Fold what the exporter left foldable, rewriting the file only when something folded."""
    model = onnx.load(str(path))
    folded = fold_constants(model)
    if folded:
        onnx.save(model, str(path))
    return folded


def export_graph(module, shape, path, opset) -> int:
    """Static-shape export, then fold what the exporter left foldable; returns the number of folded nodes."""
    torch.manual_seed(0)
    onnx_export.export_onnx(module, torch.zeros(shape), path, opset=opset, input_names=(INPUT_NAME,),
                            output_names=(OUTPUT_NAME,))
    return _fold_in_place(path)


def float_static_variant(module, batch, n_steps):
    """The static QAT variant with quantization off: computes what the float model computes, with attention as
    explicit MatMul-Softmax-MatMul and recurrence unrolled, so it exports at opsets the fused graph cannot reach."""
    variant = qat.to_qat(module, batch_size=batch, seq_len=n_steps)
    qat.set_quantization(variant, False)
    return variant.eval()


def float_graph_kind(path, module) -> str:
    """What a directly exported float graph is, from its nodes: "fused" only with a fused ONNX LSTM/GRU/RNN node;
    otherwise "traced", with why (SCRN has no ONNX op: its steps were traced one by one)."""
    ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    if ops & FUSED_RECURRENT_OPS:
        return "fused"
    if any(isinstance(m, zoo.SCRN) for m in module.modules()):
        return "traced: SCRN unrolled step by step (ONNX has no SCRN op), no fused recurrent node"
    return "traced: no fused recurrent node"


def export_float(source, shape, path, opset: int, batch: int, target) -> str:
    """The float model (with its activation) as ONNX; returns which graph it is: "fused", "traced: why" (no fused
    LSTM/GRU/RNN node) or "static (quantization off): why" (the fallback below)."""
    graph_model = with_activation(source.module, source.activation)
    try:
        export_graph(graph_model, shape, path, opset)
        return float_graph_kind(path, source.module)
    except Exception as exc:  # the exporter's own errors (e.g. SDPA below opset 14): try the static variant
        first = str(exc).splitlines()[0][:200]
    n_steps = int(source.preprocess["n_patches"])
    try:
        static = with_activation(float_static_variant(source.module, batch, n_steps), source.activation)
        export_graph(static, shape, path, opset)
    except Exception as exc2:
        raise ExportError(f"the float model cannot be exported at opset {opset} for target {target.name} "
                          f"({first}); its static variant failed too ({str(exc2).splitlines()[0][:200]})") from None
    return f"static (quantization off): the fused graph does not export at opset {opset}: {first}"


def export_like_bundle(module, example, path, opset: int = 17, activation: str = "sigmoid") -> Path:
    """The graph `toolkit export` puts in a bundle (model + activation, output `probs`, constants folded), so a
    preset benched at another batch size has the structure of its bundle."""
    onnx_export.export_onnx(with_activation(module, activation), example, path, opset=opset,
                            output_names=(OUTPUT_NAME,))
    _fold_in_place(path)
    return Path(path)
