"""Make a small, real deployment bundle for tests and benchmarks (torch is used here, never in deploy/).

The model is a tiny per-patch detector: per-patch standard deviation of each axis (so it reacts to the trembling of
a freeze), a convolution across patches for context, logits out, exported with its sigmoid by the real exporter
(`toolkit.api.export`, target cpu), so every fixture's manifest is the one users get.
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

CLASSES = ["StartHesitation", "Turn", "Walking"]
AXES = ["AccV", "AccML", "AccAP"]


def small_preprocess(**overrides) -> dict:
    spec = {"rate_hz": 64, "units": "g", "patch": 8, "n_patches": 32, "normalization": "window", "scale": 1.0,
            "layout": "BCT"}
    spec.update(overrides)
    return spec


def _model(patch: int, n_patches: int, hidden: int, seed: int, gru: int = 0, exact_rows: bool = False):
    """`exact_rows`: reduce each patch over the last axis, so that onnxruntime computes each row of a batch exactly as
    at batch 1 (its ReduceMean over a middle axis takes another summation order at batch 1 than at batch B: the rows
    then differ in the last bits, and a gateway runs such a bundle at batch 1 only; deploy.contract.batching)."""
    import torch
    from torch import nn

    class TinyPatchDetector(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = patch
            averaging = torch.zeros(3, patch * 3, 1)          # features interleaved v0, ml0, ap0, v1, ...
            for axis in range(3):
                averaging[axis, axis::3, 0] = 1.0 / patch
            self.register_buffer("averaging", averaging)
            self.mix = nn.Conv1d(6, hidden, kernel_size=5, padding=2)
            self.head = nn.Conv1d(hidden, len(CLASSES), kernel_size=3, padding=1)
            # optional bidirectional GRU over patches: a stand-in with the cost profile of the fog-small preset
            self.gru = nn.GRU(hidden, gru, batch_first=True, bidirectional=True) if gru else None
            if gru:
                self.head = nn.Conv1d(2 * gru, len(CLASSES), kernel_size=3, padding=1)

        def forward(self, x):  # x: (B, patch*3, n_patches), features interleaved v0, ml0, ap0, v1, ...
            b = x.shape[0]
            per_axis = x.reshape(b, self.patch, 3, n_patches)
            if exact_rows:   # per-patch mean and mean square as a 1x1 convolution: one GEMM row per window
                mean = nn.functional.conv1d(x, self.averaging)
                spread = (nn.functional.conv1d(x * x, self.averaging) - mean * mean).relu().add(1e-6).sqrt()
            else:
                mean = per_axis.mean(dim=1)
                spread = (per_axis - mean.unsqueeze(1)).pow(2).mean(dim=1).add(1e-6).sqrt()
            h = torch.relu(self.mix(torch.cat([mean, spread], dim=1)))
            if self.gru is not None:
                h = self.gru(h.transpose(1, 2))[0].transpose(1, 2)
            return self.head(h).transpose(1, 2)  # logits (B, n_patches, classes): the export appends the sigmoid

    torch.manual_seed(seed)
    return TinyPatchDetector().eval()


# The events the stand-in ships unless a test asks for others (quick to fire on its untrained probabilities).
TEST_EVENTS = {"hop_s": 0.5, "lookahead_s": 1.0, "smoothing_s": 0.25, "on": 0.6, "off": 0.4, "min_duration_s": 0.5,
               "refractory_s": 0.5}
_BUILT: dict[str, Path] = {}     # one real export per distinct stand-in and process, copied out to each caller


def build_bundle(folder, *, preprocess: dict | None = None, hidden: int = 16, seed: int = 0,
                 events: dict | None = None, precision: str = "fp32", gru: int = 0, batch=1,
                 exact_rows: bool = False, any_fog: str | None = None) -> Path:
    """Export the stand-in detector into `folder` the way users get bundles: `toolkit.api.export` for the cpu target
    (the real manifest writer, every section; no streaming-fidelity step, which the stand-in does not need)."""
    from toolkit import api

    spec = preprocess or small_preprocess()
    model = _model(spec["patch"], spec["n_patches"], hidden, seed, gru, exact_rows)
    api.export(model, target="cpu", out=folder, precision=precision, preprocess=spec, batch=batch, any_fog=any_fog,
               events=events or TEST_EVENTS, fidelity=False, force=True, quiet=True)
    return Path(folder)


def make_bundle(folder, **options) -> Path:
    """A verified bundle of the stand-in detector in `folder` (build_bundle's options): exported once per process for
    each distinct set of options, copied for every caller (a test may change its copy)."""
    key = json.dumps(options, sort_keys=True)
    if key not in _BUILT:
        root = Path(tempfile.mkdtemp(prefix="fog-test-bundles-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _BUILT[key] = build_bundle(root / "bundle", **options)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty")
    shutil.copytree(_BUILT[key], folder, dirs_exist_ok=True)
    return folder


def reference_infer(folder):
    """A plain onnxruntime session (no I/O binding) to compare engines against: infer(batch) -> probs."""
    from deploy.engines.session import open_session

    session = open_session(Path(folder) / "model_fp32.onnx")

    def infer(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {"x": b[None].astype(np.float32)})[0] for b in batch])
    return infer
