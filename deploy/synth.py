"""Seeded synthetic lower-back accelerometry with labelled freezing-of-gait episodes.

A recording is a sequence of activities (standing, gait initiation, straight walking, 180-degree turns, voluntary
stops) turned into per-sample control signals (locomotor amplitude, cadence, tremble amplitude, turn load), then
into three axes in the Kaggle convention (AccV carries gravity as about -1 g). Freezes follow the clinical types:
StartHesitation when gait starts after standing, Turn inside turns, Walking during straight walking; about 80 %
are kinetic (trembling at 3-8 Hz with the locomotor band suppressed), the rest akinetic (no movement: they look like
standing, as voluntary stops do, which carry no label). Durations are log-normal with the median (2.7 s) and 90th
percentile (15.6 s) of the Kaggle events.csv. Subjects differ in cadence, step amplitude, tremble frequency and
amplitude, sensor tilt and how often they freeze, so held-out subjects are meaningful.

`SynthOptions` (all off by default; off, every recording is exactly what it was before they existed) adds what the
real second lab showed the generator lacked: tremor, a narrow 4-6 Hz oscillation during walking and standing that is
NOT freezing (a real person's 4.5 Hz walking tremor was scored as freezing), and kinetic freezes whose trembling is
broadband (2-4 to 7-12 Hz noise) instead of a near-sinusoid, so "a narrow 3-8 Hz peak" stops meaning "freezing".
Their random draws come from a second generator seeded from the recording's seed, so the first one's draws, and with
them the script, the gait and the labels, stay the same whether they are on or off.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deploy.recording import CLASSES, Recording, write_recording

SH, TURN, WALK = range(3)
EPISODE_MEDIAN_S, EPISODE_P90_S = 2.7, 15.6
_SIGMA = (np.log(EPISODE_P90_S) - np.log(EPISODE_MEDIAN_S)) / 1.2816


@dataclass(frozen=True)
class Subject:
    id: str
    cadence_hz: float      # step frequency while walking straight
    step_g: float          # vertical step amplitude (g)
    tremble_hz: float      # trembling frequency during kinetic freezes
    tremble_g: float       # trembling amplitude at the lower back (g)
    pitch_deg: float       # sensor tilt: gravity leaks into AP / ML
    roll_deg: float
    freeze_rate: float     # multiplies the freezing probabilities
    harmonics: float       # weight of the smooth step harmonics (waveform shape)
    heel_g: float = 0.0    # heel-strike transient per step, relative to step_g (broadband 3-20 Hz content)
    heel_hz: float = 10.0  # ringing frequency of the heel-strike transient
    step_cv: float = 0.03  # step-to-step variability of step time and (x5) of step amplitude
    asymmetry: float = 0.0  # left/right step amplitude difference
    ml_gain: float = 0.7   # medio-lateral and antero-posterior sway relative to vertical (real: 0.6-1.0)
    ap_gain: float = 0.8


@dataclass(frozen=True)
class SynthOptions:
    """What `synth_recording` adds beyond its original generator (every default: nothing, the original output).

    - tremor_share: the probability that a recording has tremor: bouts (covering 30-90 % of the time, whatever the
      person does: standing, walking, turning, freezing) of a narrow oscillation at 4-6 Hz (one frequency per
      recording, 2 % slow jitter), 0.03-0.12 g mostly vertical, labelled as nothing: the labels follow the gait only;
    - broadband_freezes: the trembling of kinetic freezes is white noise band-passed between a low edge of 2-4 Hz and
      a high edge of 7-12 Hz (per recording) at the subject's trembling amplitude, instead of a near-sinusoid."""
    tremor_share: float = 0.0
    broadband_freezes: bool = False

    @property
    def active(self) -> bool:
        return bool(self.tremor_share) or self.broadband_freezes


def make_subject(rng: np.random.Generator, subject_id: str = "s00") -> Subject:
    # Ranges checked against real lower-back walking (mobgap, docs/data.md): ML/AP sd 0.6-1.0 of vertical, step
    # regularity (autocorrelation at one step) 0.2-0.75, 8-20 Hz power 3-30 % of the locomotor band, sensor
    # pitched forward by 0-30 deg (AccAP mean -0.04 to -0.45 g).
    return Subject(subject_id, cadence_hz=float(rng.uniform(1.5, 1.95)), step_g=float(rng.uniform(0.15, 0.26)),
                   tremble_hz=float(rng.uniform(3.5, 7.0)), tremble_g=float(rng.uniform(0.04, 0.10)),
                   pitch_deg=float(rng.normal(8, 10)), roll_deg=float(rng.normal(0, 5)),
                   freeze_rate=float(rng.uniform(0.6, 1.4)), harmonics=float(rng.uniform(0.6, 1.2)),
                   heel_g=float(rng.uniform(0.8, 1.6)), heel_hz=float(rng.uniform(5.0, 10.0)),
                   step_cv=float(rng.uniform(0.03, 0.08)), asymmetry=float(rng.uniform(0.0, 0.2)),
                   ml_gain=float(rng.uniform(0.45, 0.9)), ap_gain=float(rng.uniform(0.7, 1.15)))


def episode_duration(rng) -> float:
    return float(np.clip(rng.lognormal(np.log(EPISODE_MEDIAN_S), _SIGMA), 0.3, 60.0))


# ---------------------------------------------------------------- the activity script

def _script(rng, subject: Subject, total_s: float, protocol: bool) -> list[dict]:
    """Segments {kind, dur, fog(class|None), kinetic, dir, slow, lean}.

    kinds: stand, walk, turn, stop, fog, fidget, sit_down, sit, stand_up."""
    p_sh, p_turn, p_walk, p_stop = (0.15, 0.35, 0.10, 0.15) if protocol else (0.05, 0.06, 0.02, 0.25)
    p_sh, p_turn, p_walk = (min(0.9, p * subject.freeze_rate) for p in (p_sh, p_turn, p_walk))
    segs, t = [], 0.0

    def add(kind, dur, **kw):
        nonlocal t
        segs.append({"kind": kind, "dur": float(dur), "fog": None, "kinetic": True, "dir": 0.0, "slow": 1.0,
                     "lean": 0.0, **kw})
        t += dur

    def freeze(cls, context):
        add("fog", episode_duration(rng), fog=cls, kinetic=bool(rng.random() < 0.8), context=context,
            dir=float(rng.choice([-1.0, 1.0])))

    while t < total_s:
        add("stand", rng.uniform(2, 8) if protocol else rng.uniform(5, 30))
        # daily-living movement that is not gait and not FOG (real recordings are full of it): fidgeting while
        # standing (reaching, shifting weight), or sitting down and getting up again
        if rng.random() < (0.3 if protocol else 0.5):
            if rng.random() < 0.5:
                add("fidget", rng.uniform(2, 10))
            else:
                lean = float(rng.uniform(20, 40))
                add("sit_down", rng.uniform(1.5, 3.0), lean=lean)
                add("sit", rng.uniform(3, 20), lean=float(rng.uniform(-10, 15)))
                add("stand_up", rng.uniform(1.5, 3.0), lean=lean)
            add("stand", rng.uniform(1, 4))
        if rng.random() < p_sh:
            freeze(SH, "start")
        for _ in range(int(rng.integers(1, 4))):
            walk = rng.uniform(4, 12) if protocol else rng.uniform(8, 40)
            slow = float(rng.uniform(0.7, 0.9)) if rng.random() < 0.25 else 1.0  # slow, careful walking
            if rng.random() < p_walk:
                split = rng.uniform(0.3, 0.7)
                add("walk", walk * split, slow=slow)
                freeze(WALK, "walk")
                add("walk", walk * (1 - split), slow=slow)
            else:
                add("walk", walk, slow=slow)
            direction = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.5, 1.8))
            turn = rng.uniform(1.5, 4.5)
            if rng.random() < p_turn:
                add("turn", turn * 0.4, dir=direction)
                freeze(TURN, "turn")
                segs[-1]["dir"] = float(np.sign(direction))
                add("turn", turn * 0.6, dir=direction)
            else:
                add("turn", turn, dir=direction)
            if rng.random() < p_stop:  # voluntary stop: still, unlabelled; the classic false-alarm trap
                add("stop", rng.uniform(2, 6))
    return segs


# ---------------------------------------------------------------- signal synthesis

def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 1:
        return x
    kernel = np.ones(n) / n
    padded = np.concatenate([np.full(n, x[0]), x, np.full(n, x[-1])])
    return np.convolve(padded, kernel, mode="same")[n:-n]


def _slow_noise(rng, n: int, rate: float, tau_s: float) -> np.ndarray:
    """Unit-variance noise varying over about tau_s."""
    k = max(1, int(tau_s * rate))
    x = _smooth(rng.normal(size=n + 2 * k), k)[k:k + n]
    return x / (x.std() + 1e-12)


def _rotation(pitch_deg, roll_deg) -> np.ndarray:
    p, r = np.radians(pitch_deg), np.radians(roll_deg)
    pitch = np.array([[np.cos(p), 0, -np.sin(p)], [0, 1, 0], [np.sin(p), 0, np.cos(p)]])  # V <-> AP
    roll = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])    # V <-> ML
    return roll @ pitch


def _controls(rng, segs, n: int, rate_hz: float) -> tuple[dict, np.ndarray, list]:
    """Per-sample control signals of the activity script (locomotor amplitude, cadence factor, tremble, turn load,
    fidgeting, trunk lean, rising), smoothed into transitions; the labels and the episodes' truth."""
    c = {k: np.zeros(n) for k in ("loco", "cadence_k", "tremble", "turn_ml", "turn_ap", "fidget", "lean", "rise")}
    c["cadence_k"] += 1.0
    labels = np.zeros((n, 3))
    episodes, t0 = [], 0
    for seg in segs:
        a, b = t0, min(n, t0 + int(round(seg["dur"] * rate_hz)))
        t0 = b
        if a >= n:
            break
        kind = seg["kind"]
        prof = np.sin(np.pi * np.linspace(0, 1, b - a))
        if kind == "walk":
            c["loco"][a:b], c["cadence_k"][a:b] = seg["slow"] ** 2, seg["slow"]
        elif kind == "turn":
            c["loco"][a:b], c["cadence_k"][a:b] = 0.75, 0.88
            c["turn_ml"][a:b], c["turn_ap"][a:b] = seg["dir"] * 0.10 * prof, -0.03 * prof
        elif kind == "fidget":
            c["fidget"][a:b] = rng.uniform(0.3, 1.0)
        elif kind in ("sit_down", "sit", "stand_up"):
            c["lean"][a:b] = seg["lean"]  # trunk pitch (deg); smoothed below into a sit-to-stand trajectory
            if kind != "sit":       # the body is accelerated down then up (sitting) or up then down (rising)
                c["rise"][a:b] = (0.15 if kind == "stand_up" else -0.15) * np.sin(2 * np.pi * np.linspace(0, 1, b - a))
        elif kind == "fog":
            labels[a:b, seg["fog"]] = 1.0
            episodes.append({"cls": CLASSES[seg["fog"]], "onset_s": a / rate_hz, "offset_s": b / rate_hz,
                             "kinetic": seg["kinetic"], "context": seg["context"]})
            if seg["kinetic"]:
                c["loco"][a:b], c["cadence_k"][a:b] = rng.uniform(0.05, 0.25), rng.uniform(1.1, 1.5)  # shuffling
                c["tremble"][a:b] = rng.uniform(0.6, 1.4)
            if seg["context"] == "turn":  # turning in place, slowly
                c["turn_ml"][a:b], c["turn_ap"][a:b] = seg["dir"] * 0.04, -0.01
    # transitions: gait ramps over ~0.5 s, tremble sets in over ~0.15 s, turn loads over ~0.3 s, trunk leans ~1 s
    for key, seconds in (("loco", 0.5), ("cadence_k", 0.5), ("tremble", 0.15), ("turn_ml", 0.3), ("turn_ap", 0.3),
                         ("fidget", 0.5), ("lean", 1.0)):
        c[key] = _smooth(c[key], int(seconds * rate_hz))
    return c, labels, episodes


def _gait(rng, subject: Subject, c: dict, n: int, rate_hz: float, tremble_wave=None) -> tuple[np.ndarray, ...]:
    """Vertical, mediolateral and anteroposterior trunk acceleration of the steps, heel strikes and trembling (a
    near-sinusoid at the subject's frequency, or `tremble_wave` with its RMS, 1/sqrt 2; the draws are the same either
    way)."""
    loco = c["loco"]
    dt = 1.0 / rate_hz
    jitter = rng.normal(0, 0.002, n)  # 2 ms clock jitter, as phase error of every oscillation
    # step time varies slowly (fatigue, path) and from step to step (real step regularity is far from 1)
    cadence = subject.cadence_hz * c["cadence_k"] * (1 + 0.03 * _slow_noise(rng, n, rate_hz, 5.0)) \
        * (1 + subject.step_cv * _slow_noise(rng, n, rate_hz, 0.4))
    phase0 = rng.uniform(0, 2 * np.pi)
    phase = 2 * np.pi * (np.cumsum(cadence) * dt + cadence * jitter) + phase0
    f_tr = subject.tremble_hz * (1 + 0.05 * _slow_noise(rng, n, rate_hz, 1.0))
    psi = 2 * np.pi * (np.cumsum(f_tr) * dt + f_tr * jitter)
    # every step has its own amplitude; left and right steps differ (asymmetry)
    step = np.floor((phase - phase0) / (2 * np.pi)).astype(np.int64)
    step -= step.min()
    side = np.where(np.arange(step.max() + 1) % 2 == 0, 1.0, -1.0)
    per_step = np.clip(1 + 5 * subject.step_cv * rng.normal(size=step.max() + 1), 0.5, 1.6) \
        * (1 + subject.asymmetry * side)
    step_amp = _smooth(per_step[step], int(0.08 * rate_hz))
    amp = subject.step_g * loco * (1 + 0.12 * _slow_noise(rng, n, rate_hz, 1.0)) * step_amp
    stride = phase / 2  # left/right steps differ: a stride-frequency component
    h = subject.harmonics
    v = amp * (np.sin(phase) + 0.55 * h * np.sin(2 * phase + 0.6) + 0.30 * h * np.sin(3 * phase + 1.1)
               + 0.18 * h * np.sin(4 * phase + 2.0) + 0.12 * np.sin(stride + 0.4))
    ap = subject.ap_gain * amp * (0.8 * np.sin(phase + 1.3) + 0.3 * np.sin(2 * phase + 0.2)
                                  + 0.15 * np.sin(3 * phase + 2.2)) + c["turn_ap"]
    ml = subject.ml_gain * amp * (1.0 * np.sin(stride) + 0.4 * np.sin(phase + 0.7)
                                  + 0.15 * np.sin(3 * stride + 1.0)) + c["turn_ml"]
    # heel strikes: a short damped ringing at each step onset, the broadband (3-20 Hz) content of real gait
    onsets = np.flatnonzero(np.diff(step) > 0) + 1
    impulses = np.zeros(n)
    impulses[onsets] = subject.heel_g * subject.step_g * loco[onsets] * per_step[step[onsets]] \
        * rng.uniform(0.6, 1.4, len(onsets))
    tk = np.arange(int(0.25 * rate_hz)) / rate_hz
    kernel = np.exp(-tk * subject.heel_hz * 1.2) * np.sin(2 * np.pi * subject.heel_hz * tk)
    heel = np.convolve(impulses, kernel / np.abs(kernel).max())[:n]
    v, ap, ml = v + heel, ap - 0.6 * subject.ap_gain * heel, ml + 0.9 * side[step] * heel
    wave = np.sin(psi) if tremble_wave is None else tremble_wave
    trem = subject.tremble_g * c["tremble"] * (1 + 0.3 * _slow_noise(rng, n, rate_hz, 0.5)) * wave
    return v + trem + c["rise"], ap + 0.6 * trem, ml + 0.3 * trem


def _band_noise(rng, n: int, rate_hz: float, low_hz: float, high_hz: float) -> np.ndarray:
    """White noise keeping only [low_hz, high_hz] (an FFT mask), scaled to a sinusoid's RMS (1/sqrt 2)."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    wave = np.fft.irfft(spectrum, n)
    return wave / (np.sqrt(2.0) * wave.std() + 1e-12)


def _tremor(extra, n: int, rate_hz: float) -> tuple[np.ndarray, list]:
    """(n, 3) trunk acceleration [V, ML, AP] of tremor bouts (SynthOptions.tremor_share) and the bouts in seconds."""
    envelope, bouts, t = np.zeros(n), [], float(extra.uniform(0, 20))
    cover = extra.uniform(0.3, 0.9)                       # share of the time with tremor
    while t < n / rate_hz:
        length = float(extra.uniform(5, 40))
        a, b = int(t * rate_hz), min(n, int((t + length) * rate_hz))
        envelope[a:b] = 1.0
        bouts.append([round(a / rate_hz, 3), round(b / rate_hz, 3)])
        t += length + length * (1 - cover) / cover * float(extra.uniform(0.5, 1.5))
    envelope = _smooth(envelope, int(0.5 * rate_hz)) * extra.uniform(0.03, 0.12) \
        * (1 + 0.2 * _slow_noise(extra, n, rate_hz, 2.0))
    freq = extra.uniform(4.0, 6.0) * (1 + 0.02 * _slow_noise(extra, n, rate_hz, 3.0))
    phase = 2 * np.pi * np.cumsum(freq) / rate_hz + extra.uniform(0, 2 * np.pi)
    gains = np.array([1.0, extra.uniform(0.1, 0.4), extra.uniform(0.2, 0.6)])   # mostly vertical
    return (envelope * np.sin(phase))[:, None] * gains, bouts


def _sensor(rng, subject: Subject, c: dict, vml_ap: tuple, n: int, rate_hz: float, minutes: float):
    """The sensor's reading of the trunk's movement: irregular movement and sway added, gravity and motion rotated
    by trunk lean and the sensor's tilt, noise, and dropouts (the sensor holding its last value)."""
    v, ap, ml = vml_ap
    # fidgeting: irregular trunk movement up to ~4 Hz, no step rhythm; walking wobbles irregularly too
    move = np.stack([0.5 * _slow_noise(rng, n, rate_hz, 0.8) + _slow_noise(rng, n, rate_hz, 0.15)
                     for _ in range(3)], 1) * (0.06 * c["fidget"])[:, None]
    move += np.stack([_slow_noise(rng, n, rate_hz, 0.06) for _ in range(3)], 1) \
        * (0.25 * subject.step_g * c["loco"])[:, None]
    sway = 0.004 * np.stack([_slow_noise(rng, n, rate_hz, 2.0) for _ in range(3)], 1)
    body = np.stack([v - 1.0, ml, ap], axis=1) + sway + move
    th = np.radians(c["lean"])  # trunk lean rotates gravity and motion between V and AP
    body = np.stack([body[:, 0] * np.cos(th) - body[:, 2] * np.sin(th), body[:, 1],
                     body[:, 0] * np.sin(th) + body[:, 2] * np.cos(th)], axis=1)
    tilt = _rotation(subject.pitch_deg + rng.normal(0, 1.5), subject.roll_deg + rng.normal(0, 1.0))
    acc = body @ tilt.T + rng.normal(0, 0.006, (n, 3))
    dropouts = []
    for _ in range(rng.poisson(minutes / 2.0)):  # the sensor holds its last value for 50-300 ms
        a = int(rng.integers(1, max(2, n - 1)))
        b = min(n, a + int(rng.uniform(0.05, 0.3) * rate_hz))
        acc[a:b] = acc[a - 1]
        dropouts.append([a / rate_hz, b / rate_hz])
    return acc, dropouts


def _optional_motion(options: SynthOptions, seed: int, n: int, rate_hz: float) -> tuple:
    """(trembling waveform or None, tremor (n, 3) or None, meta) of `options`, drawn from their own generator."""
    extra = np.random.default_rng([seed, 2])
    wave, tremor, meta = None, None, {"options": asdict(options)}
    if options.broadband_freezes:
        low, high = float(extra.uniform(2.0, 4.0)), float(extra.uniform(7.0, 12.0))
        wave, meta["freeze_band_hz"] = _band_noise(extra, n, rate_hz, low, high), [round(low, 2), round(high, 2)]
    if extra.random() < options.tremor_share:
        tremor, meta["tremor_bouts"] = _tremor(extra, n, rate_hz)
    return wave, tremor, meta


def synth_recording(minutes: float = 5.0, seed: int = 0, rate_hz: float = 100.0, units: str = "g",
                    subject: Subject | None = None, protocol: bool = True,
                    options: SynthOptions | None = None) -> Recording:
    """One recording; same Recording object the readers give (labels in CLASSES order, meta with the truth).
    One seeded generator is drawn from in a fixed order (script, controls, gait, sensor): keep that order.
    `options` (SynthOptions) draw from a second generator, so the first one's draws stay as they were."""
    rng = np.random.default_rng(seed)
    subject = subject or make_subject(np.random.default_rng([seed, 1]), f"s{seed:02d}")
    segs = _script(rng, subject, minutes * 60.0, protocol)
    n = int(round(minutes * 60.0 * rate_hz))
    controls, labels, episodes = _controls(rng, segs, n, rate_hz)
    options = options if options is not None and options.active else None
    wave, tremor, extra_meta = _optional_motion(options, seed, n, rate_hz) if options else (None, None, None)
    v, ap, ml = _gait(rng, subject, controls, n, rate_hz, wave)
    if tremor is not None:
        v, ml, ap = v + tremor[:, 0], ml + tremor[:, 1], ap + tremor[:, 2]
    acc, dropouts = _sensor(rng, subject, controls, (v, ap, ml), n, rate_hz, minutes)
    if units == "m/s^2":
        acc = acc * 9.80665
    acc = np.round(acc, 6)  # a sensor's resolution (Kaggle files carry 4-6 digits); keeps CSVs compact
    meta = {"subject": subject.id, "seed": seed, "synthetic": True, "protocol": protocol,
            "subject_params": asdict(subject), "episodes": episodes, "dropouts": dropouts,
            "activities": [[s["kind"], round(s["dur"], 3)] for s in segs], "id": f"{subject.id}_{seed}"}
    if extra_meta:
        meta["synth_options"] = extra_meta
    return Recording(acc, float(rate_hz), units, time=np.arange(n), labels=labels,
                     mask=np.ones(n, bool), meta=meta)


LAYOUT_RATES = {"tdcsfog": (128.0, "m/s^2"), "defog": (100.0, "g"), "npz": (100.0, "g")}


def synth_dataset(out_dir, subjects: int = 8, minutes: float = 5.0, seed: int = 0, layout: str = "defog",
                  recordings_per_subject: int = 1, progress=None) -> list[Path]:
    """A folder of recordings plus `metadata.csv` (Id, Subject, minutes, frozen_fraction) and `subjects.json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rate, units = LAYOUT_RATES[layout]
    rows, params, paths = ["Id,Subject,Minutes,FrozenFraction"], {}, []
    for s in range(subjects):
        subject = make_subject(np.random.default_rng([seed, 1000 + s]), f"s{s:02d}")
        params[subject.id] = asdict(subject)
        for r in range(recordings_per_subject):
            rec = synth_recording(minutes, seed=seed * 10007 + s * 101 + r, rate_hz=rate, units=units,
                                  subject=subject)
            rec_id = f"{subject.id}r{r}"
            path = out / f"{rec_id}.{'npz' if layout == 'npz' else 'csv'}"
            write_recording(rec, path, layout)
            frozen = float(rec.labels.max(1).mean())
            rows.append(f"{rec_id},{subject.id},{minutes:g},{frozen:.4f}")
            paths.append(path)
            if progress:
                progress(len(paths), subjects * recordings_per_subject)
    (out / "metadata.csv").write_text("\n".join(rows) + "\n")
    (out / "subjects.json").write_text(json.dumps(params, indent=2) + "\n")
    return paths
