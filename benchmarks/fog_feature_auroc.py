"""What separates freezing from not freezing at the lower back, person by person and lab by lab: the AUROC of single
hand features on real recordings (window level), and what the non-freezing windows are (still or moving).

  python benchmarks/fog_feature_auroc.py ../shared/data/daphnet ../shared/data/stanford-imu-fog-64hz
  python benchmarks/fog_feature_auroc.py ../shared/data/daphnet --lowpass-hz 15     # Daphnet band-limited as Stanford

Windows: 4 s (activity: 2 s) centred every 0.25 s, label = the label at the centre, only valid (mask) centres.
Frame: gravity = 4 s moving mean; V = along gravity, H = the horizontal part (its power summed over axes, so it does
not depend on the heading). AUROC 0.5 = no information; < 0.5 = freezing has LESS of it. A feature whose AUROC sits on
opposite sides of 0.5 in the two labs cannot carry across them on its own (issue 25's probe report).
"""
from __future__ import annotations

import argparse

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from deploy.metrics import roc_auc
from deploy.preprocess import convert_units
from deploy.recording import read_recordings

RATE, HOP_S, WIN_S = 64.0, 0.25, 4.0
STILL_MG = 30.0   # 2 s RMS below this: standing or sitting still


def frame(acc_g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V (n,), H (n, 3)) in g; where a sensor reads exactly 0 (Daphnet outside the experiment) the frame is kept
    finite, those samples are masked out anyway."""
    k = int(WIN_S * RATE)
    padded = np.pad(acc_g, ((k // 2, k - k // 2 - 1), (0, 0)), mode="edge")
    gravity = sliding_window_view(padded, k, axis=0).mean(-1)
    norm = np.linalg.norm(gravity, axis=1, keepdims=True)
    g_hat = np.where(norm > 0.1, gravity / np.maximum(norm, 1e-9), np.array([-1.0, 0.0, 0.0]))
    v = np.einsum("ij,ij->i", acc_g, g_hat)
    return v, acc_g - v[:, None] * g_hat


def windows(x: np.ndarray, centres: np.ndarray, win: int) -> np.ndarray:
    half = win // 2
    padded = np.concatenate([np.repeat(x[:1], half, 0), x, np.repeat(x[-1:], win - half, 0)], 0)
    w = sliding_window_view(padded, win, axis=0)[centres]
    return w - w.mean(-1, keepdims=True)


def power(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-square spectrum (g^2 per bin; summed over axes for (n, 3, win)) and its frequencies."""
    win = w.shape[-1]
    hann = np.hanning(win)
    p = np.abs(np.fft.rfft(w * hann, axis=-1)) ** 2 * 2 / (win * np.sum(hann ** 2))
    return (p.sum(1) if p.ndim == 3 else p), np.fft.rfftfreq(win, 1 / RATE)


def band(p, freqs, lo, hi):
    return np.log(p[:, (freqs >= lo) & (freqs < hi)].sum(1) + 1e-8)


def step_regularity(w: np.ndarray) -> np.ndarray:
    """Peak of the normalised autocorrelation at one step (0.35-0.75 s): high while walking steadily."""
    n = w.shape[-1]
    ac = np.fft.irfft(np.abs(np.fft.rfft(w, 2 * n, axis=-1)) ** 2, axis=-1)[:, :n]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    return ac[:, int(0.35 * RATE):int(0.75 * RATE)].max(1)


def features(rec, lowpass_hz: float | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    acc = convert_units(rec.acc, rec.units, "g")
    if rec.rate_hz != RATE:
        raise SystemExit(f"{rec.meta.get('name')}: {rec.rate_hz} Hz; this table is made at {RATE:g} Hz")
    if lowpass_hz:   # as the Stanford 64 Hz copy was made: 4th-order causal Butterworth
        from scipy.signal import butter, sosfilt
        acc = sosfilt(butter(4, lowpass_hz, fs=RATE, output="sos"), acc - acc[:1], axis=0) + acc[:1]
    v, h = frame(acc)
    centres = np.arange(int(HOP_S * RATE) // 2, len(acc), int(HOP_S * RATE))
    wv, wh = windows(v, centres, int(WIN_S * RATE)), windows(h, centres, int(WIN_S * RATE))
    pv, f = power(wv)
    ph, _ = power(wh)
    act_p, fa = power(windows(v, centres, int(2 * RATE)))
    act_h, _ = power(windows(h, centres, int(2 * RATE)))
    activity = np.logaddexp(band(act_p, fa, 0.5, 15), band(act_h, fa, 0.5, 15))
    per_s = int(1 / HOP_S)
    prev5 = np.array([activity[max(0, i - 6 * per_s):max(1, i - per_s + 1)].mean() for i in range(len(activity))])
    out = {"V 0.5-3 Hz": band(pv, f, 0.5, 3), "V 3-8 Hz": band(pv, f, 3, 8), "V 8-15 Hz": band(pv, f, 8, 15),
           "H 0.5-3 Hz": band(ph, f, 0.5, 3), "H 3-8 Hz": band(ph, f, 3, 8), "H 8-15 Hz": band(ph, f, 8, 15),
           "freeze index V": band(pv, f, 3, 8) - band(pv, f, 0.5, 3), "step regularity V": step_regularity(wv),
           "activity 2 s": activity, "activity - prev 5 s": activity - prev5,
           "rms mg": np.sqrt(np.exp(activity)) * 1000.0}
    label = rec.labels.max(1)[centres] > 0.5
    valid = np.ones(len(centres), bool) if rec.mask is None else np.asarray(rec.mask, bool)[centres]
    return {k: x[valid] for k, x in out.items()}, label[valid], valid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", help="folders or files of labelled 64 Hz recordings")
    p.add_argument("--lowpass-hz", type=float, help="low-pass Daphnet recordings first (Stanford's copy is at 15 Hz)")
    args = p.parse_args(argv)
    per = {}
    for rec in read_recordings(args.paths):
        if rec.labels is None:
            continue
        lp = args.lowpass_hz if rec.meta.get("lab") == "daphnet" else None
        feats, y, _ = features(rec, lp)
        key = (rec.meta.get("lab", "?"), rec.meta["subject"])
        got = per.setdefault(key, {"y": [], **{k: [] for k in feats}})
        got["y"].append(y)
        for k, x in feats.items():
            got[k].append(x)
    people = sorted(per)
    data = {key: {k: np.concatenate(v) for k, v in d.items()} for key, d in per.items()}
    names = [k for k in data[people[0]] if k not in ("y", "rms mg")]
    freezers = [key for key in people if data[key]["y"].any() and not data[key]["y"].all()]
    labs = sorted({lab for lab, _ in freezers})
    print("AUROC of each feature (freezing vs not), per person and pooled per lab")
    print(f"{'feature':22s}" + "".join(f"{s:>6s}" for _, s in freezers) + " |" + "".join(f"{lab[:8]:>9s}" for lab in labs))
    for name in names:
        cells = [roc_auc(data[k]["y"], data[k][name]) for k in freezers]
        pooled = []
        for lab in labs:
            keys = [k for k in freezers if k[0] == lab]
            pooled.append(roc_auc(np.concatenate([data[k]["y"] for k in keys]),
                                  np.concatenate([data[k][name] for k in keys])))
        print(f"{name:22s}" + "".join(f"{c:6.2f}" for c in cells) + " |" + "".join(f"{c:9.2f}" for c in pooled))
    print(f"\nWhat the windows are: share of not-freezing windows that are still (2 s RMS < {STILL_MG:g} mg), median RMS")
    for key in people:
        d = data[key]
        y, rms = d["y"], d["rms mg"]
        still = float((rms[~y] < STILL_MG).mean()) if (~y).any() else float("nan")
        fog = f"{np.median(rms[y]):5.0f}" if y.any() else "    -"
        print(f"  {key[1]:5s} ({key[0]}): not freezing still {still:4.2f}, median RMS not freezing "
              f"{np.median(rms[~y]):5.0f} mg, freezing {fog} mg, freezing share {y.mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
