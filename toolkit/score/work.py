"""The per-recording work, the same for every runner: read in chunks -> not-worn stretches -> the bundle's engine on
the daemon's grid (`deploy.chunked`, equal to `deploy.offline.predict_recording`) -> the bundle's event detector.

`CohortWorker` holds one opened engine; `CohortWorker.score(recording)` returns a plain, JSON-safe dict (what the
local runner's workers and the Ray actors send back, and what the resume cache stores).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

from toolkit.score.worn import BlockStats, NotWorn, WornSettings

# Raised whenever the per-recording result could change for the same file, bundle and settings.
WORK_VERSION = 2   # 2: events as the bundle says (events.mode, background classes left out)


@dataclass
class Settings:
    """What a score depends on besides the recording and the bundle's files."""
    backend: str = "onnxruntime"
    precision: str | None = None
    hop_s: float | None = None            # None: the bundle's (as the daemon)
    lookahead_s: float | str | None = None
    events: dict = field(default_factory=dict)   # overrides of the bundle's event knobs
    worn: WornSettings = field(default_factory=WornSettings)
    chunk_s: float = 600.0                # seconds of signal read per chunk (bounds memory: ~15x the raw chunk)
    batch_size: int = 16

    def to_dict(self) -> dict:
        return {**self.identity(), "chunk_s": self.chunk_s, "batch_size": self.batch_size}

    def identity(self) -> dict:
        """The settings results depend on (chunking and batching do not change a result: deploy.chunked)."""
        return {"backend": self.backend, "precision": self.precision, "hop_s": self.hop_s,
                "lookahead_s": self.lookahead_s, "events": dict(self.events), "worn": self.worn.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        d = dict(d)
        d["worn"] = WornSettings(**d.get("worn", {}))
        return cls(**d)


def bundle_signature(bundle, settings: Settings) -> str:
    """Identity of (bundle files, settings, this code): part of every cache key."""
    files = {k: v.get("sha256") for k, v in sorted(bundle.manifest.get("files", {}).items())}
    blob = json.dumps({"files": files, "settings": settings.identity(), "work": WORK_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CohortWorker:
    """One engine, many recordings (one at a time)."""

    def __init__(self, bundle_dir, settings: Settings, threads: int = 1):
        from deploy.bundle import Bundle
        from deploy.config import event_settings
        from deploy.engines import batch_infer, open_engine

        self.settings = settings
        self.bundle = Bundle.load(bundle_dir, verify=True)
        self.spec = self.bundle.input.spec
        self.engine = open_engine(self.bundle, backend=settings.backend, precision=settings.precision,
                                  threads=threads, exact=True)
        self.infer = batch_infer(self.engine)
        self.classes = self.bundle.classes
        # hop, look-ahead and event knobs exactly as the daemon resolves them (flags > manifest > defaults)
        config = {"stream": {"hop_s": settings.hop_s, "lookahead_s": settings.lookahead_s},
                  "events": dict(settings.events)}
        self.events = event_settings(config, self.bundle)

    def close(self) -> None:
        self.engine.close()

    def try_score(self, source, progress=None) -> dict:
        """`score`, but a recording that cannot be read (a FogError: bad file, missing column, NaN) gives
        {"name", "path", "error"} instead of stopping the cohort; it is reported and retried by the next run."""
        from deploy.errors import FogError
        try:
            return self.score(source, progress)
        except FogError as exc:
            return {"name": source.name, "path": str(source.path), "subject": source.subject, "error": str(exc)}

    def score(self, source, progress=None) -> dict:
        """Score one recording (a toolkit.score.read.RecordingFile). `progress(seconds, length_s)` is called once the file is
        open with 0 and its exact length (the bar's total was an estimate), then per chunk with its seconds."""
        from deploy.chunked import predict_chunks, recording_stats
        from deploy.events import Detection

        started = time.perf_counter()
        reader = source.open()
        rate, units = reader.rate_hz, reader.units
        if progress:
            progress(0.0, reader.n_samples / rate)
        rows = max(1, int(self.settings.chunk_s * rate))
        # pass 1: not-worn blocks (and the whole recording's statistics for "recording" normalization)
        worn = self.settings.worn
        not_worn = NotWorn([], self.spec.rate_hz)
        stats = None
        if worn.enabled:
            blocks = BlockStats(rate, units, worn)
            for chunk in reader.chunks(rows):
                blocks.push(chunk)
            not_worn = NotWorn(blocks.intervals(), self.spec.rate_hz)
        if self.spec.normalization == "recording":
            stats = recording_stats(reader.chunks(rows), self.spec, rate, units)
        # pass 2: the model on the daemon's grid, events as the daemon's detector finds them (event classes, mode)
        detection = Detection.of_bundle(self.bundle, self.events)
        detector = detection.detector(self.spec.rate_hz)
        events = []

        def chunks():
            for chunk in reader.chunks(rows):
                yield chunk
                if progress:
                    progress(len(chunk) / rate)

        skip = not_worn.covers if not_worn.intervals else None
        rate_hz = self.spec.rate_hz
        for first, probs in predict_chunks(chunks(), rate, units, self.spec, self.infer,
                                           self.events.hop_samples(rate_hz), self.events.lookahead_samples(rate_hz),
                                           self.settings.batch_size,
                                           recording_stats=stats, skip=skip, n_classes=len(self.classes)):
            if not_worn.intervals:
                not_worn.clear(first, probs)
            events += detector.update(detection.rows(probs))
        events += detector.flush()
        events.sort(key=lambda e: (e.onset_s, e.cls))
        return {
            "name": source.name, "path": str(source.path), "subject": source.subject, "visit": source.visit,
            "subject_from": source.subject_from, "start_of_day_s": source.start_of_day_s, "rate_hz": rate, "units": units,
            "n_samples": int(reader.n_samples), "duration_s": reader.n_samples / rate,
            "events": [{"class": e.cls, "onset_s": e.onset_s, "offset_s": e.offset_s, "detect_s": e.detect_s,
                        "peak": e.peak} for e in events],
            "not_worn": [list(iv) for iv in not_worn.intervals],
            "compute_s": time.perf_counter() - started,
        }
