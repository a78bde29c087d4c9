"""Make a small, real deployment bundle for tests and benchmarks (torch is used here, never in deploy/).

The model is a tiny per-patch detector: per-patch standard deviation of each axis (so it reacts to the trembling of
a freeze), a convolution across patches for context, and a sigmoid appended in the graph, exported with
`models.onnx_export.export_onnx` (input "x", output "probs"), manifest written by `deploy.bundle.write_manifest`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["StartHesitation", "Turn", "Walking"]
AXES = ["AccV", "AccML", "AccAP"]


def small_preprocess(**overrides) -> dict:
    spec = {"rate_hz": 64, "units": "g", "patch": 8, "n_patches": 32, "normalization": "window", "scale": 1.0,
            "layout": "BCT"}
    spec.update(overrides)
    return spec


def _model(patch: int, n_patches: int, hidden: int, seed: int, gru: int = 0):
    import torch
    from torch import nn

    class TinyPatchDetector(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = patch
            self.mix = nn.Conv1d(6, hidden, kernel_size=5, padding=2)
            self.head = nn.Conv1d(hidden, len(CLASSES), kernel_size=3, padding=1)
            # optional bidirectional GRU over patches: a stand-in with the cost profile of the fog-small preset
            self.gru = nn.GRU(hidden, gru, batch_first=True, bidirectional=True) if gru else None
            if gru:
                self.head = nn.Conv1d(2 * gru, len(CLASSES), kernel_size=3, padding=1)

        def forward(self, x):  # x: (B, patch*3, n_patches), features interleaved v0, ml0, ap0, v1, ...
            b = x.shape[0]
            per_axis = x.reshape(b, self.patch, 3, n_patches)
            mean = per_axis.mean(dim=1)
            spread = (per_axis - mean.unsqueeze(1)).pow(2).mean(dim=1).add(1e-6).sqrt()
            h = torch.relu(self.mix(torch.cat([mean, spread], dim=1)))
            if self.gru is not None:
                h = self.gru(h.transpose(1, 2))[0].transpose(1, 2)
            return torch.sigmoid(self.head(h)).transpose(1, 2)  # (B, n_patches, classes)

    torch.manual_seed(seed)
    return TinyPatchDetector().eval()


def make_bundle(folder, *, preprocess: dict | None = None, hidden: int = 16, seed: int = 0,
                events: dict | None = None, precision: str = "fp32", gru: int = 0) -> Path:
    """Write a verified bundle into `folder` and return it."""
    import torch

    from deploy.bundle import write_manifest
    from models.onnx_export import export_onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = preprocess or small_preprocess()
    patch, n_patches = spec["patch"], spec["n_patches"]
    model = _model(patch, n_patches, hidden, seed, gru)
    example = torch.zeros(1, patch * 3, n_patches)
    export_onnx(model, example, folder / "model_fp32.onnx", input_names=("x",), output_names=("probs",))
    n_params = sum(p.numel() for p in model.parameters())
    manifest = {
        "schema_version": 1,
        "toolkit_version": "test",
        "created": "2026-01-01T00:00:00Z",
        "model": {"name": "tiny-patch-detector", "preset": None, "source": "user", "tsai_compat": False,
                  "weights_sha256": None, "parameters": int(n_params), "macs": None},
        "input": {"name": "x", "shape": [1, patch * 3, n_patches], "dtype": "float32", "preprocess": spec,
                  "axes": AXES},
        "output": {"name": "probs", "shape": [1, n_patches, len(CLASSES)], "classes": CLASSES, "per": "patch",
                   "activation": "sigmoid"},
        "events": events or {"hop_s": 0.5, "lookahead_s": 1.0, "smoothing_s": 0.25,
                             "on": {c: 0.6 for c in CLASSES}, "off": {c: 0.4 for c in CLASSES},
                             "min_duration_s": 0.5, "refractory_s": 0.5},
        "precision": precision,
        "models": {"fp32": "model_fp32.onnx", "fp16": None, "int8": None, "engine": None},
        "target": {"name": "cpu-onnxruntime"},
        "verification": {"pairs": {}, "windows": 0},
        "checks": [],
    }
    write_manifest(folder, manifest)
    return folder


def reference_infer(folder):
    """A plain onnxruntime session (no I/O binding) to compare engines against: infer(batch) -> probs."""
    from deploy.engines.session import open_session

    session = open_session(Path(folder) / "model_fp32.onnx")

    def infer(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {"x": b[None].astype(np.float32)})[0] for b in batch])
    return infer
