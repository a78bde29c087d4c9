"""Which activation calibrator should export, calibrate and train --qat default to? Measured, not guessed.

For each calibrator (max, percentile, mse, entropy) and each calibration set (64 synthetic windows, as export uses
by default; 64 windows of the real Daphnet recordings), the default model's QAT variant is calibrated, exported as
the bundle's INT8 Q/DQ graph, and run in onnxruntime (the cpu target's integer kernels) over whole recordings on the
bundle's hop grid. Figures: pooled any-FOG AP of INT8 vs float (PyTorch) on the real Daphnet recordings and on 4
held-out synthetic subjects, and the largest |p_int8 - p_float| over every sample of every recording.

  nice -n 10 python benchmarks/calibrator_choice.py ../shared/data/daphnet --out calibrator_choice.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from calibration import ptq
from calibration.checkpoint import load_model
from calibration.data import BatchReader, WindowReader, synthetic_recordings, synthetic_windows
from deploy.contract import EVENT_DEFAULTS
from deploy.contract.events import EventSettings
from deploy.offline import predict_recording
from deploy.preprocess import PreprocessSpec
from deploy.recording import read_recordings
from deploy.scoring import at_recording_rate, score
from models import get_preset
from models.qat import set_quantization, to_qat
from toolkit.export.onnx import export_graph, with_activation
from toolkit.export.verify import ort_session

METHODS = ("percentile", "mse", "entropy", "max")
BATCH = 32


def fixed_batch(run):
    """infer(x) for a graph with a static batch: pad the last slice."""
    def infer(x):
        out = []
        for i in range(0, len(x), BATCH):
            part = x[i:i + BATCH]
            n = len(part)
            if n < BATCH:
                part = np.concatenate([part, np.repeat(part[-1:], BATCH - n, axis=0)])
            out.append(run(np.ascontiguousarray(part, dtype=np.float32))[:n])
        return np.concatenate(out)
    return infer


def predict(recordings, spec, infer):
    events = EventSettings()   # what a bundle carries by default
    hop, look = events.hop_samples(spec.rate_hz), events.lookahead_samples(spec.rate_hz)
    return [at_recording_rate(predict_recording(r, spec, infer, hop, look), spec.rate_hz, r) for r in recordings]


def figures(sets, float_probs, probs) -> dict:
    out = {}
    for name, recs in sets.items():
        ap = score(recs, probs[name], EVENT_DEFAULTS)["any_fog"]["ap"]
        ap_float = score(recs, float_probs[name], EVENT_DEFAULTS)["any_fog"]["ap"]
        dp = max(float(np.abs(a - b).max()) for a, b in zip(probs[name], float_probs[name]))
        out[name] = {"any_fog_ap_int8": ap, "any_fog_ap_float": ap_float, "ap_change": ap - ap_float, "max_abs_dp": dp}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("daphnet", help="folder of Daphnet text files (../shared/data/daphnet)")
    ap.add_argument("--out", default="calibrator_choice.json")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, preset, _ = load_model("fog-small")
    spec_dict = dict(get_preset(preset).preprocess)
    spec = PreprocessSpec.from_dict(spec_dict)
    sets = {"daphnet": read_recordings([args.daphnet]), "synthetic": synthetic_recordings(4, seed=1000)}

    def float_run(x):
        with torch.no_grad():
            return torch.sigmoid(model(torch.from_numpy(x))).numpy()
    float_probs = {k: predict(v, spec, float_run) for k, v in sets.items()}
    readers = {"synthetic 64": BatchReader(synthetic_windows(spec_dict, 64, BATCH, seed=1)),
               "daphnet 64": WindowReader(sets["daphnet"], spec_dict, limit=64, batch_size=BATCH)}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for cal_name, reader in readers.items():
                started = time.perf_counter()
                qat = to_qat(model, batch_size=BATCH, seq_len=spec.n_patches).eval()
                ptq.calibrate(qat, reader, method, progress=False)
                set_quantization(qat, True)
                path = Path(tmp) / f"{method}.onnx"
                export_graph(with_activation(qat, "sigmoid"), (BATCH, *spec.input_shape[1:]), path, 17)
                session = ort_session(path)
                name = session.get_inputs()[0].name
                infer = fixed_batch(lambda x: session.run(None, {name: x})[0])
                probs = {k: predict(v, spec, infer) for k, v in sets.items()}
                row = {"method": method, "calibration": cal_name, **figures(sets, float_probs, probs),
                       "seconds": round(time.perf_counter() - started, 1)}
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"{'method':<11} {'calibrated on':<13} {'Daphnet AP int8/float':>22} {'max|dp|':>8} "
          f"{'synthetic AP int8/float':>24} {'max|dp|':>8}")
    for r in results:
        d, s = r["daphnet"], r["synthetic"]
        print(f"{r['method']:<11} {r['calibration']:<13} {d['any_fog_ap_int8']:>10.4f} / {d['any_fog_ap_float']:.4f} "
              f"{d['max_abs_dp']:>8.3f} {s['any_fog_ap_int8']:>12.4f} / {s['any_fog_ap_float']:.4f} "
              f"{s['max_abs_dp']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
