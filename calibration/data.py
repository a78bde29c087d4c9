"""Model-input windows from recordings, for calibration, training and PTQ checks.

Data and calibrators stay apart, as in onnxruntime's quantization tools: a `CalibrationDataReader` yields
`{"x": batch}` dicts until it returns None, and can `rewind()`; whatever consumes it (a calibrator, a training
loop, an ONNX Runtime check) never sees recordings. `WindowReader` is the reader over recordings.

Every window goes through the shared preprocessing in `deploy.preprocess` (units, resampling, normalization,
patching), the same code the device runs, so calibration ranges match what the engine will see.

Sampling: windows are spread over recordings round-robin (each recording gets its share whatever its length),
and a `class_share` of them is centred near a labelled sample of a class present in that recording, cycling
over the classes, so rare classes (start hesitation) are not left out of a few hundred windows. The rest start
uniformly at random. Everything is drawn from one seeded generator: same recordings + seed = same windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deploy.contract import CLASSES, INPUT_NAME
from deploy.errors import DataError
from deploy.preprocess import PreprocessSpec, patchify, prepare
from deploy.recording import Recording, read_recordings
from deploy.synth import make_subject, synth_recording


class CalibrationDataReader(Protocol):
    """What calibration consumes: batches of model input by input name, None when exhausted."""

    def get_next(self) -> dict | None: ...

    def rewind(self) -> None: ...


@dataclass
class PreparedRecording:
    """A recording at the model's rate and units (per `deploy.preprocess.prepare`), labels aligned to it."""
    name: str
    subject: str
    acc: np.ndarray                  # (n, 3) float32, as `prepare` returns it
    labels: np.ndarray | None        # (n, C) float32, nearest original sample
    mask: np.ndarray | None          # (n,) bool
    typed: bool = True               # labels carry Kaggle's 3 types (False: one "freeze" label, e.g. Daphnet)

    @property
    def n_samples(self) -> int:
        return len(self.acc)


@dataclass
class WindowSet:
    """N model-input windows with per-patch targets: x (N, *input shape), labels/mask (N, n_patches, C)."""
    x: np.ndarray
    labels: np.ndarray | None
    mask: np.ndarray | None
    origin: list                     # (recording name, start sample at the model rate) per window
    typed: np.ndarray | None = None  # (N,) bool: False where the labels are one untyped "freeze" label

    def __len__(self) -> int:
        return len(self.x)


def as_spec(spec) -> PreprocessSpec:
    return spec if isinstance(spec, PreprocessSpec) else PreprocessSpec.from_dict(dict(spec))


def prepare_recording(recording: Recording, spec, name: str | None = None) -> PreparedRecording:
    spec = as_spec(spec)
    acc = np.asarray(prepare(recording, spec), dtype=np.float32)
    n = len(acc)
    # Labels and masks follow the nearest original sample: they are annotations, not signal to filter.
    index = np.minimum(np.round(np.arange(n) * recording.rate_hz / spec.rate_hz).astype(np.int64),
                       recording.n_samples - 1)
    labels = None if recording.labels is None else recording.labels[index].astype(np.float32)
    mask = None
    if labels is not None:
        mask = np.ones(n, dtype=bool) if recording.mask is None else recording.mask[index]
    meta = recording.meta or {}
    name = name or str(meta.get("id") or meta.get("name") or meta.get("source") or "recording")
    subject = str(meta.get("subject") or name)
    return PreparedRecording(name=name, subject=subject, acc=acc, labels=labels, mask=mask,
                             typed=meta.get("label_kind", "typed") != "any")


def _patch_targets(values: np.ndarray, patch: int, reduce) -> np.ndarray:
    """(B, window, C) per-sample -> (B, n_patches, C) per patch (max: any positive sample; min: all valid)."""
    b, window, c = values.shape
    return reduce(values.reshape(b, window // patch, patch, c), axis=2)


@dataclass(frozen=True)
class Augment:
    """Training-time changes to raw windows (in g, before the window z-score), drawn per window.

    Real sensors sit at other angles than any generator's, people walk at other cadences, and amplifiers differ:
    - rotation: the sensor frame turned about a random axis by up to `rotation_deg` (gravity moves between axes);
    - scale: all axes multiplied by one factor in `scale` (matters for presets without per-window z-score);
    - time warp: the window read from `window * f` samples (f in `warp`) resampled to `window`, so cadence and
      trembling frequency move by 1/f (labels follow, nearest sample);
    - noise: white noise with an sd drawn in `noise_g`;
    - low-pass (`lowpass` = (probability, lowest Hz, highest Hz), off by default): with that probability the window
      is low-passed at a cutoff drawn between the two (a windowed-sinc FIR), so a model does not learn which lab
      band-limited its recordings (the Stanford trials were low-passed at 15 Hz, Daphnet's were not).
    Used by `calibration.train.fit` for training batches only; validation and calibration windows are never
    augmented.
    """
    rotation_deg: float = 30.0
    scale: tuple = (0.8, 1.25)
    warp: tuple = (0.85, 1.18)
    noise_g: tuple = (0.0, 0.02)
    lowpass: tuple | None = None


def lowpass_fir(x: np.ndarray, cutoff_hz: float, rate_hz: float, taps: int = 31) -> np.ndarray:
    """(n, 3) low-passed along time by a Hamming-windowed sinc of `taps` taps (unit gain at 0 Hz), zero phase, the
    ends extended with their edge values (gravity stays gravity at the window's ends)."""
    t = np.arange(taps) - taps // 2
    kernel = np.sinc(2 * cutoff_hz / rate_hz * t) * np.hamming(taps)
    kernel /= kernel.sum()
    padded = np.pad(x, ((taps // 2, taps // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, a], kernel, mode="valid") for a in range(x.shape[1])], 1)


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis) + 1e-12
    angle = np.radians(rng.uniform(0, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)  # Rodrigues


def cut_windows(prepared: list[PreparedRecording], starts: list[tuple[int, int]], spec,
                augment: Augment | None = None, rng: np.random.Generator | None = None) -> WindowSet:
    """Windows at (recording index, start) pairs; a window running past the end is zero padded and masked.

    With `augment` (and `rng`), each window is changed as `Augment` describes before normalization."""
    spec = as_spec(spec)
    window = spec.window
    raw = np.zeros((len(starts), window, 3), dtype=np.float32)
    has_labels = all(prepared[i].labels is not None for i, _ in starts) and len(starts) > 0
    labels = np.zeros((len(starts), window, len(CLASSES)), dtype=np.float32) if has_labels else None
    valid = np.zeros((len(starts), window, len(CLASSES)), dtype=np.float32) if has_labels else None
    for k, (i, start) in enumerate(starts):
        rec = prepared[i]
        if augment is None:
            index = np.arange(start, min(start + window, rec.n_samples))
            piece = rec.acc[index]
        else:
            pos = start + np.arange(window) * rng.uniform(*augment.warp)
            pos = pos[pos <= rec.n_samples - 1]
            index = np.round(pos).astype(np.int64)
            grid = np.arange(rec.n_samples)
            piece = np.stack([np.interp(pos, grid[index.min():index.max() + 2],
                                        rec.acc[index.min():index.max() + 2, a]) for a in range(3)], 1)
            piece = piece @ _random_rotation(rng, augment.rotation_deg).T * rng.uniform(*augment.scale)
            piece = piece + rng.normal(0, rng.uniform(*augment.noise_g), piece.shape)
            if augment.lowpass and rng.random() < augment.lowpass[0]:
                piece = lowpass_fir(piece, rng.uniform(*augment.lowpass[1:]), spec.rate_hz)
        raw[k, :len(piece)] = piece
        if has_labels:
            labels[k, :len(piece)] = rec.labels[index]
            valid[k, :len(piece)] = rec.mask[index, None]
    x = np.asarray(patchify(raw, spec), dtype=np.float32)
    if has_labels:
        labels = _patch_targets(labels, spec.patch, np.max)
        valid = _patch_targets(valid, spec.patch, np.min)
    origin = [(prepared[i].name, int(s)) for i, s in starts]
    typed = np.array([prepared[i].typed for i, _ in starts], dtype=bool)
    return WindowSet(x=x, labels=labels, mask=valid, origin=origin, typed=typed)


def _centres(rec: PreparedRecording, c: int, by_episode: bool):
    """Class c's valid labelled samples: one array, or (by_episode) one array per episode, so each is drawn alike."""
    idx = np.flatnonzero((rec.labels[:, c] > 0) & rec.mask)
    return np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if by_episode and idx.size else idx


def sample_starts(prepared: list[PreparedRecording], window: int, count: int, rng: np.random.Generator,
                  class_share: float = 0.5, by_episode: bool = False) -> list[tuple[int, int]]:
    """`count` (recording index, start) pairs: round-robin over recordings, a share centred on classes (on a
    labelled sample drawn uniformly, or with `by_episode` on an episode drawn uniformly, then a sample of it)."""
    if not prepared:
        raise DataError("no recordings to draw windows from", fix="give at least one recording")
    order = rng.permutation(len(prepared))
    positives = [None if r.labels is None else [_centres(r, c, by_episode) for c in range(r.labels.shape[1])]
                 for r in prepared]
    starts, next_class = [], 0
    for k in range(count):
        i = int(order[k % len(order)])
        rec = prepared[i]
        latest = max(rec.n_samples - window, 0)
        present = [] if positives[i] is None else [c for c, p in enumerate(positives[i]) if len(p)]
        if present and rng.random() < class_share:
            c = present[next_class % len(present)]
            next_class += 1
            pool = positives[i][c]
            centre = int(rng.choice(pool[rng.integers(len(pool))] if by_episode else pool))
            start = int(np.clip(centre - rng.integers(window // 4, 3 * window // 4 + 1), 0, latest))
        else:
            start = int(rng.integers(0, latest + 1))
        starts.append((i, start))
    return starts


def sample_windows(prepared: list[PreparedRecording], spec, count: int, seed: int = 0,
                   class_share: float = 0.5) -> WindowSet:
    spec = as_spec(spec)
    rng = np.random.default_rng(seed)
    return cut_windows(prepared, sample_starts(prepared, spec.window, count, rng, class_share), spec)


def synthetic_windows(spec, count: int, batch: int, seed: int) -> list[np.ndarray]:
    """`count` windows (rounded up to whole batches) in model layout from one synthetic FOG recording, as batches.

    The recording comes from `deploy.synth` and goes through `deploy.preprocess` exactly as the daemon's input does;
    starts are uniform. Different seeds give different recordings: export calibrates on one seed and verifies on
    another (held out)."""
    spec = as_spec(spec)
    n_windows = max(1, -(-count // batch)) * batch
    rng = np.random.default_rng(seed)
    minutes = max(1.0, 2.0 * n_windows * spec.window_s / 60.0)
    recording = synth_recording(minutes=minutes, seed=1000 + seed, rate_hz=spec.rate_hz, units=spec.units)
    prepared = prepare_recording(recording, spec)
    starts = np.sort(rng.integers(0, prepared.n_samples - spec.window, size=n_windows))
    x = cut_windows([prepared], [(0, int(s)) for s in starts], spec).x
    return [x[i:i + batch] for i in range(0, n_windows, batch)]


class BatchReader:
    """A `CalibrationDataReader` over batches already in memory; `description` is what `describe()` reports."""

    def __init__(self, batches, description: dict | None = None, input_name: str = INPUT_NAME):
        self.batches, self.description, self.input_name, self._position = list(batches), description, input_name, 0

    def get_next(self) -> dict | None:
        if self._position >= len(self.batches):
            return None
        self._position += 1
        return {self.input_name: self.batches[self._position - 1]}

    def rewind(self) -> None:
        self._position = 0

    def describe(self) -> dict:
        return dict(self.description or {})


class WindowReader(BatchReader):
    """A `CalibrationDataReader` over recordings: `limit` windows, `batch_size` at a time, seeded.

    `recordings` may be `Recording` objects or `PreparedRecording`s. The windows are drawn once at
    construction, so `rewind()` replays exactly the same batches.
    """

    def __init__(self, recordings, spec, limit: int = 512, seed: int = 0, batch_size: int = 32,
                 class_share: float = 0.5, input_name: str = INPUT_NAME):
        if limit < 1:
            raise DataError(f"calibration window limit must be at least 1, got {limit}")
        self.spec = as_spec(spec)
        self.prepared = [r if isinstance(r, PreparedRecording) else prepare_recording(r, self.spec)
                         for r in recordings]
        self.limit, self.seed, self.batch_size = limit, seed, batch_size
        self.class_share = class_share
        self.windows = sample_windows(self.prepared, self.spec, limit, seed, class_share)
        x = self.windows.x
        super().__init__([x[i:i + batch_size] for i in range(0, len(x), batch_size)], input_name=input_name)

    def describe(self) -> dict:
        """What the windows are, for the calibration cache."""
        return {"recordings": [r.name for r in self.prepared], "subjects": sorted({r.subject for r in self.prepared}),
                "limit": self.limit, "seed": self.seed, "class_share": self.class_share,
                "preprocess": self.spec.to_dict()}


def synthetic_recordings(subjects: int, seed: int = 0, minutes: float = 5.0, per_subject: int = 1,
                         rate_hz: float = 100.0, options=None) -> list[Recording]:
    """Seeded synthetic recordings (deploy.synth), `per_subject` per subject. Subject ids carry the seed
    (`syn{seed}-s07`), so sets drawn with different seeds never share a subject. `options`: a
    deploy.synth.SynthOptions (or its fields as a dict), e.g. tremor that is not freezing."""
    from deploy.synth import SynthOptions
    options = SynthOptions(**options) if isinstance(options, dict) else options
    recordings = []
    for s in range(subjects):
        subject = make_subject(np.random.default_rng([seed, 1000 + s]), f"syn{seed}-s{s:02d}")
        for r in range(per_subject):
            rec = synth_recording(minutes, seed=seed * 10007 + s * 101 + r, rate_hz=rate_hz, subject=subject,
                                  options=options)
            rec.meta.update(name=f"{subject.id}r{r}", generator="deploy.synth")
            recordings.append(rec)
    return recordings


def recordings_from_args(args) -> list[Recording]:
    """Recordings named on a command line: files/folders (`args.data`) or `--synthetic N` (seeded by --seed)."""
    if getattr(args, "synthetic", None):
        if args.data:
            raise DataError("give either recordings or --synthetic N, not both")
        return synthetic_recordings(args.synthetic, seed=getattr(args, "seed", 0),
                                    minutes=getattr(args, "synthetic_minutes", 5.0),
                                    per_subject=getattr(args, "synthetic_per_subject", 1))
    if not args.data:
        raise DataError("no recordings given", fix="name files or folders, or use --synthetic N")
    return read_recordings(args.data, layout=getattr(args, "layout", None), mapping=getattr(args, "mapping", None))


def label_kind(recording) -> str:
    """"typed" (Kaggle's three types), "untyped" (one "freeze" label in every class column: Daphnet, Stanford) or
    "unlabelled", of a Recording or a PreparedRecording."""
    if recording.labels is None:
        return "unlabelled"
    if isinstance(recording, PreparedRecording):
        return "typed" if recording.typed else "untyped"
    return "untyped" if (recording.meta or {}).get("label_kind") == "any" else "typed"


def fingerprint(rec) -> dict:
    """Which recording this is, by content: its name, subject, and the sha256 of its file (read from memory: of
    its samples and labels). Checkpoints keep their training recordings' fingerprints (describe_recordings), so
    `toolkit evaluate` can say which figures are in-sample, whatever the files are called."""
    import hashlib
    from pathlib import Path

    from deploy.bundle import sha256_file
    meta = getattr(rec, "meta", None) or {}
    name = str(meta.get("name") or meta.get("id") or getattr(rec, "name", None) or "recording")
    out = {"name": name, "subject": meta.get("subject") or getattr(rec, "subject", None)}
    source = meta.get("source")
    if source and Path(source).is_file():
        return {**out, "file": str(source), "sha256": sha256_file(source)}
    digest = hashlib.sha256(np.ascontiguousarray(rec.acc).tobytes())
    if rec.labels is not None:
        digest.update(np.ascontiguousarray(rec.labels).tobytes())
    return {**out, "data_sha256": digest.hexdigest()}


def describe_recordings(recordings) -> dict:
    """A short JSON-safe description of a set of recordings (for checkpoints and caches): each recording's fingerprint
    (name, subject, content sha256) under "fingerprints", and `label_kinds`, the recordings counted by `label_kind`:
    what the model learnt its classes from (calibration.checkpoint.trained_event_mode)."""
    names, subjects, seconds, sources, prints = [], set(), 0.0, set(), []
    kinds = {"typed": 0, "untyped": 0, "unlabelled": 0}
    for r in recordings:
        kinds[label_kind(r)] += 1
        if isinstance(r, PreparedRecording):
            names.append(r.name)
            subjects.add(r.subject)
            prints.append(fingerprint(r))
            continue
        meta = r.meta or {}
        names.append(str(meta.get("id") or meta.get("name") or meta.get("source") or "recording"))
        subjects.add(str(meta.get("subject") or names[-1]))
        seconds += r.duration_s
        sources.add(str(meta.get("generator") or meta.get("layout") or "file"))
        prints.append({k: v for k, v in fingerprint(r).items() if k != "file"})
    return {"recordings": len(names), "subjects": sorted(subjects), "hours": round(seconds / 3600, 3),
            "sources": sorted(sources), "names": names[:50], "label_kinds": kinds, "fingerprints": prints}
