"""The fused recurrence in FP16: explicit casts for strongly typed TensorRT, and a range check on calibration data.

A strongly typed TensorRT network takes every tensor's precision from the ONNX and accepts no precision flags
(TensorRT 11 always; the x86-cuda target builds strongly typed on 10.x too). So the plan's FP16 recurrence must be
written into the graph: `cast_fused_recurrence` stores the fused node's weights as FP16 initializers, casts its
activation inputs to FP16 and its outputs back to FP32; the rest of the graph keeps its types (Q/DQ layers INT8).

`RecurrentRanges` watches the recurrent layers while calibration runs (the model computes in float then), so the
FP16 range check costs no extra pass: no weight, input or output beyond FP16's largest value (65504), and the share
of values that FP16 stores as subnormals (|x| < 2**-14, precision lost) or flushes to zero (|x| < 2**-25).
"""
from __future__ import annotations

import numpy as np

from deploy.lazy import lazy_import

onnx = lazy_import("onnx", "workstation", "casting the recurrence to FP16")
torch = lazy_import("torch", "workstation", "watching the recurrent layers during calibration")

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0 ** -14
FP16_ZERO_BELOW = 2.0 ** -25    # below half the smallest subnormal a value rounds to zero
FUSED_OPS = ("LSTM", "GRU", "RNN")
# Inputs of ONNX LSTM/GRU/RNN: X, W, R, B, sequence_lens (int32, never cast), initial_h, initial_c, P.
_NOT_FLOAT = {4}


def cast_fused_recurrence(model) -> int:
    """Rewrite `model` in place so every fused LSTM/GRU/RNN node computes in FP16; returns how many were cast."""
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto  # noqa: N806
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    nodes = list(graph.node)
    cast = 0
    for node in nodes:
        if node.op_type not in FUSED_OPS:
            continue
        position = list(graph.node).index(node)
        before, after = [], []
        for i, name in enumerate(node.input):
            if not name or i in _NOT_FLOAT:
                continue
            if name in initializers:
                half = f"{name}__fp16"
                if half not in initializers:
                    value = numpy_helper.to_array(initializers[name]).astype(np.float16)
                    initializers[half] = numpy_helper.from_array(value, half)
                    graph.initializer.append(initializers[half])
                node.input[i] = half
            else:
                half = f"{name}__to_fp16_{node.name or position}"
                before.append(helper.make_node("Cast", [name], [half], to=TensorProto.FLOAT16,
                                               name=f"{node.name}_cast_in{i}_fp16"))
                node.input[i] = half
        for i, name in enumerate(node.output):
            if not name:
                continue
            half = f"{name}__fp16"
            node.output[i] = half
            after.append(helper.make_node("Cast", [half], [name], to=TensorProto.FLOAT,
                                          name=f"{node.name}_cast_out{i}_fp32"))
        for offset, new in enumerate(before):
            graph.node.insert(position + offset, new)
        position += len(before) + 1
        for offset, new in enumerate(after):
            graph.node.insert(position + offset, new)
        cast += 1
    _drop_stale_value_info(model, {o for n in graph.node if n.op_type in FUSED_OPS for o in n.output})
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    return cast


def _drop_stale_value_info(model, names: set) -> None:
    """Shape inference re-derives the types the exporter recorded for tensors whose type just changed."""
    for vi in [v for v in model.graph.value_info if v.name in names]:
        model.graph.value_info.remove(vi)


class RecurrentRanges:
    """Forward hooks on every nn.LSTM/GRU/RNN of a module: max |value| and FP16 subnormal/zero counts of the
    layers' inputs and outputs (hidden sequence, final h and c), plus their weights once. Use as a context."""

    def __init__(self, module):
        nn = torch.nn
        self.layers = {n: m for n, m in module.named_modules() if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN))}
        self.stats = {"weights": _Tally(), "activations": _Tally()}
        self._hooks = []
        self.calls = 0

    def __enter__(self) -> "RecurrentRanges":
        for m in self.layers.values():
            for p in m.parameters():
                self.stats["weights"].add(p.detach())
            self._hooks.append(m.register_forward_hook(self._observe))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def observe(self, module, batches) -> None:
        """Run `batches` through `module` (the watched one) when no calibration pass does: given ranges."""
        with torch.no_grad():
            for batch in batches:
                module(torch.as_tensor(batch))

    def _observe(self, _module, inputs, output) -> None:
        self.calls += 1
        for t in _tensors((inputs, output)):
            self.stats["activations"].add(t.detach())

    def check(self) -> dict:
        """{name, passed, detail} for the manifest's checks."""
        if not self.layers:
            return {"name": "FP16 range of the recurrence", "passed": True, "detail": "no fused recurrent layer"}
        act, w = self.stats["activations"], self.stats["weights"]
        passed = act.max_abs <= FP16_MAX and w.max_abs <= FP16_MAX and act.count > 0
        detail = (f"{len(self.layers)} layer(s), {self.calls} calls on calibration data: weights max |w| "
                  f"{w.max_abs:.4g}, {w.subnormal_share:.2%} subnormal, {w.zero_share:.2%} to zero; activations "
                  f"max |x| {act.max_abs:.4g}, {act.subnormal_share:.2%} subnormal, {act.zero_share:.2%} to zero "
                  f"(FP16 max {FP16_MAX:g})")
        if act.count == 0:
            detail = "no calibration batch reached the recurrent layers"
        return {"name": "FP16 range of the recurrence", "passed": bool(passed), "detail": detail,
                "figures": {k: v.to_dict() for k, v in self.stats.items()}}


class _Tally:
    def __init__(self):
        self.count = self.subnormal = self.zero = self.batches = 0
        self.max_abs = 0.0

    def add(self, t) -> None:
        a = t.abs().float()
        nonzero = a > 0
        self.count += a.numel()
        self.subnormal += int(((a < FP16_MIN_NORMAL) & (a >= FP16_ZERO_BELOW)).sum())
        self.zero += int(((a < FP16_ZERO_BELOW) & nonzero).sum())
        self.max_abs = max(self.max_abs, float(a.max()) if a.numel() else 0.0)
        self.batches += 1

    @property
    def subnormal_share(self) -> float:
        return self.subnormal / max(self.count, 1)

    @property
    def zero_share(self) -> float:
        return self.zero / max(self.count, 1)

    def to_dict(self) -> dict:
        return {"values": self.count, "max_abs": self.max_abs, "subnormal_share": self.subnormal_share,
                "flushed_to_zero_share": self.zero_share}


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
