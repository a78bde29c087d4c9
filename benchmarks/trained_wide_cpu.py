"""Decision agreement of a cpu bundle's plans with the float model on REAL windows (issue 17).

Export verifies on synthetic windows; this runs the trained checkpoint (float, PyTorch) and every plan the bundle
ships (fp32, the INT8 graph whole, and its stages when the manifest has them) on windows cut from real recordings,
half of them centred on labelled freezes, and reports `toolkit.export.verify.compare`'s figures per plan (mean,
p99, agreement on the elements the float model decides by more than the margin, decisive share).

  toolkit export --model runs/fog-small-wide/model.pt --target cpu --precision fastest \
      --calib-data ../shared/data/daphnet --out runs/fog-small-wide/bundle
  PYTHONPATH=$PWD nice -n 10 python benchmarks/trained_wide_cpu.py --checkpoint runs/fog-small-wide/model.pt \
      --bundle runs/fog-small-wide/bundle ../shared/data/daphnet [--windows 96]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from calibration.checkpoint import load_model
from calibration.data import prepare_recording, sample_windows
from deploy.bundle import Bundle
from deploy.engines.onnxruntime import OnnxRuntimeEngine
from deploy.engines.staged import StagedEngine
from deploy.recording import read_recordings
from toolkit.export import verify
from toolkit.export.onnx import with_activation


def real_windows(paths, spec, count: int, seed: int) -> np.ndarray:
    prepared = [prepare_recording(r, spec) for r in read_recordings(paths)]
    return sample_windows(prepared, spec, count, seed=seed, class_share=0.5).x


def engines(bundle: Bundle, threads: int) -> dict:
    """Plan name -> engine, for every graph the bundle ships."""
    folder, models, settings = bundle.folder, bundle.models, bundle.onnxruntime
    found = {"fp32": OnnxRuntimeEngine(folder / models.fp32, threads=threads)}
    if models.int8:
        found[f"int8 ({models.int8}, whole)"] = OnnxRuntimeEngine(
            folder / models.int8, threads=threads, preoptimized="int8" in settings.preoptimized)
    staged = settings.staged_plan("int8")
    if staged:
        found["int8 stages"] = StagedEngine(folder, staged, threads=threads, preoptimized=bool(staged["preoptimized"]))
    return found


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--windows", type=int, default=96)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    model, preset, _ = load_model(checkpoint=args.checkpoint)
    bundle = Bundle.load(args.bundle)
    x = real_windows(args.data, bundle.spec, args.windows, args.seed)
    batches = [x[i:i + 1] for i in range(len(x))]
    reference = verify.torch_run(with_activation(model, "sigmoid"), batches)
    result = {"preset": preset, "windows": len(x), "elements": int(reference.size)}
    for name, engine in engines(bundle, args.threads).items():
        out = np.concatenate([engine.infer(b).copy() for b in batches])
        engine.close()
        pair = verify.compare("torch_vs_ort_int8_dynamic", reference, out)
        result[name] = {k: pair[k] for k in ("mean_abs", "p99_abs", "max_abs", "agreement", "agreement_all",
                                             "decisive_share", "passed")}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
