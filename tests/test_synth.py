"""Synthetic recordings: determinism, labels, episode statistics, and realism against real mobgap walking."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.recording import CLASSES, read_recording
from deploy.synth import episode_duration, synth_dataset, synth_recording


def _walking_windows(v, rate, walking, win_s=4.0):
    """(step frequency, vertical sd) of 4 s windows lying entirely in walking."""
    w = int(win_s * rate)
    out = []
    for a in range(0, len(v) - w, w // 2):
        if walking[a:a + w].all():
            seg = v[a:a + w] - v[a:a + w].mean()
            f = np.fft.rfftfreq(8192, 1 / rate)
            p = np.abs(np.fft.rfft(seg * np.hanning(w), 8192)) ** 2
            band = (f >= 0.5) & (f < 3)
            out.append((f[band][np.argmax(p[band])], seg.std()))
    return np.array(out).reshape(-1, 2)


def _synthetic_walking(rec):
    walking, t = np.zeros(rec.n_samples, bool), 0.0
    for kind, dur in rec.meta["activities"]:
        a, t = int(round(t * rec.rate_hz)), t + dur
        if kind == "walk":
            walking[a + 50:int(round(t * rec.rate_hz)) - 50] = True
    return walking & (rec.labels.max(1) == 0)


def test_seeded_and_shaped_like_a_reader_recording():
    a, b = synth_recording(1, seed=4), synth_recording(1, seed=4)
    assert np.array_equal(a.acc, b.acc) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.acc, synth_recording(1, seed=5).acc)
    assert a.acc.shape == (6000, 3) and a.labels.shape == (6000, 3) and a.rate_hz == 100
    assert -1.1 < np.median(a.acc[:, 0]) < -0.9  # gravity on AccV
    ms = synth_recording(1, seed=4, rate_hz=128, units="m/s^2")
    assert ms.units == "m/s^2" and -10.5 < np.median(ms.acc[:, 0]) < -9.0


def test_fog_protocol_has_enough_freezing_of_every_class():
    recs = [synth_recording(5, seed=s) for s in range(6)]
    frozen = np.mean([r.labels.max(1).mean() for r in recs])
    assert 0.08 < frozen < 0.30
    counts = {c: sum(e["cls"] == c for r in recs for e in r.meta["episodes"]) for c in CLASSES}
    assert counts["Turn"] > counts["Walking"] > 0 and counts["StartHesitation"] > 0
    assert all(r.labels.sum(1).max() <= 1 for r in recs)  # one class at a time


def test_episode_durations_follow_the_real_distribution():
    rng = np.random.default_rng(0)
    d = np.array([episode_duration(rng) for _ in range(20000)])
    assert 2.4 < np.median(d) < 3.0 and 13.5 < np.percentile(d, 90) < 17.5
    assert 0.15 < np.mean(d < 1.0) < 0.27


def test_walking_matches_real_mobgap_walking(mobgap_dir):
    def local_sd(v, n=400):
        k = np.ones(n) / n
        return np.sqrt(np.maximum(np.convolve(v ** 2, k, "same") - np.convolve(v, k, "same") ** 2, 0))

    # the straight walks (Test5): windows whose 4 s vertical sd shows walking
    real = np.concatenate([_walking_windows(r.acc[:, 0], r.rate_hz, local_sd(r.acc[:, 0]) > 0.08)
                           for r in (read_recording(p) for p in sorted(mobgap_dir.glob("*/*/*Test5*.csv")))])
    assert len(real) >= 8
    synth = np.concatenate([_walking_windows(r.acc[:, 0], r.rate_hz, _synthetic_walking(r))
                            for r in (synth_recording(3, seed=s) for s in range(4))])
    lo_f, hi_f = np.percentile(real[:, 0], [0, 100])
    lo_a, hi_a = np.percentile(real[:, 1], [0, 100])
    assert lo_f - 0.15 <= np.median(synth[:, 0]) <= hi_f + 0.15  # median step frequency within the real range
    assert lo_a <= np.median(synth[:, 1]) <= hi_a                  # median vertical sd within the real range


def test_dataset_folder(tmp_path):
    paths = synth_dataset(tmp_path, subjects=2, minutes=0.5, seed=1, layout="tdcsfog")
    assert len(paths) == 2 and (tmp_path / "metadata.csv").exists() and (tmp_path / "subjects.json").exists()
    rec = read_recording(paths[0])
    assert rec.meta["layout"] == "tdcsfog" and rec.rate_hz == 128


def _shape_features(acc, rate, walking, win_s=4.0):
    """Per 4 s window in walking: (3-8 Hz / 0.5-3 Hz power of AccV, 8-20 Hz / 0.5-3 Hz of AccV,
    ML sd / V sd, AP sd / V sd): what separates real lower-back gait from a sum of smooth sinusoids."""
    w = int(win_s * rate)
    f = np.fft.rfftfreq(w, 1 / rate)
    out = []
    for a in range(0, len(acc) - w, w // 2):
        if walking[a:a + w].all():
            seg = acc[a:a + w] - acc[a:a + w].mean(0)
            p = np.abs(np.fft.rfft(seg[:, 0] * np.hanning(w))) ** 2
            loco = p[(f >= 0.5) & (f < 3)].sum()
            sd = seg.std(0)
            out.append((p[(f >= 3) & (f < 8)].sum() / loco, p[(f >= 8) & (f < 20)].sum() / loco,
                        sd[1] / sd[0], sd[2] / sd[0]))
    return np.array(out).reshape(-1, 4)


def test_walking_has_the_heel_strikes_and_sway_of_real_walking(mobgap_dir):
    real = []
    for r in (read_recording(p) for p in sorted(mobgap_dir.glob("*/*/*Test5*.csv"))):
        v = r.acc[:, 0]
        k = np.ones(400) / 400
        moving = np.sqrt(np.maximum(np.convolve(v ** 2, k, "same") - np.convolve(v, k, "same") ** 2, 0)) > 0.08
        real.append(_shape_features(r.acc, r.rate_hz, moving))
    real = np.concatenate(real)
    synth = np.concatenate([_shape_features(r.acc, r.rate_hz, _synthetic_walking(r))
                            for r in (synth_recording(3, seed=s) for s in range(4))])
    lo, hi = np.percentile(real, 10, axis=0), np.percentile(real, 90, axis=0)
    median = np.median(synth, axis=0)
    # freeze index, 8-20 Hz share, ML/V and AP/V sd ratios: each synthetic median inside the real 10-90 % range
    assert np.all((lo <= median) & (median <= hi)), (lo, median, hi)


def _band_peakedness(v, rate, lo=3.0, hi=8.0):
    """Share of the 3-8 Hz power in its strongest 0.5 Hz: near 1 for a sinusoid, small for broadband noise."""
    f = np.fft.rfftfreq(len(v), 1 / rate)
    p = np.abs(np.fft.rfft(v - v.mean())) ** 2
    band = (f >= lo) & (f < hi)
    peak = f[band][np.argmax(p[band])]
    return p[band & (np.abs(f - peak) < 0.25)].sum() / p[band].sum()


def test_options_off_change_nothing_and_tremor_is_never_labelled_freezing():
    from deploy.synth import SynthOptions
    plain = synth_recording(2, seed=7)
    off = synth_recording(2, seed=7, options=SynthOptions())
    assert np.array_equal(plain.acc, off.acc) and "synth_options" not in off.meta
    tremor = synth_recording(2, seed=7, options=SynthOptions(tremor_share=1.0))
    assert np.array_equal(tremor.labels, plain.labels)           # tremor is not freezing: labels follow the gait
    bouts = tremor.meta["synth_options"]["tremor_bouts"]
    assert bouts and not np.array_equal(tremor.acc, plain.acc)
    a, b = (int(x * tremor.rate_hz) for x in bouts[0])
    added = tremor.acc[a:b, 0] - plain.acc[a:b, 0]                 # what the tremor added during its first bout
    f = np.fft.rfftfreq(len(added), 1 / tremor.rate_hz)
    assert 4.0 <= f[np.argmax(np.abs(np.fft.rfft(added)))] <= 6.0 and _band_peakedness(added, tremor.rate_hz) > 0.5


def test_broadband_freezes_tremble_over_a_band_not_at_one_frequency():
    from deploy.synth import SynthOptions
    freezing = [synth_recording(3, seed=s, options=SynthOptions(broadband_freezes=True)) for s in range(3)]
    sine = [synth_recording(3, seed=s) for s in range(3)]

    def peakedness(recs):
        out = []
        for r in recs:
            frozen = r.labels.max(1) > 0
            if frozen.sum() > 4 * r.rate_hz:
                out.append(_band_peakedness(r.acc[frozen, 0], r.rate_hz))
        return np.median(out)
    assert peakedness(freezing) < peakedness(sine)
