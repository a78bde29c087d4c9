"""The calibration cache: the ranges a calibration produced, saved as JSON so they can be reused.

Like TensorRT's calibration cache it lets an export skip re-running calibration, but it is plain JSON that
says how it was made: amax per quantizer (a number, or a list for per-channel), the calibrator and its
options, a description of the data (recordings, windows, seed, preprocessing), the quantizers no window reached
(`unused`: inert at the calibrated shape, given the placeholder `calibration.ptq.UNUSED_AMAX`) and a hash of the
model's float weights. Loading a cache into a model whose weights changed is refused, because the ranges would be
stale. Reading and writing need no torch; hashing a model does (`model_hash`).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from deploy.errors import FogError

CACHE_SCHEMA = 1


class CalibrationCacheError(FogError):
    """A calibration cache that cannot be read or does not fit the model it is applied to."""


def model_hash(model) -> str:
    """sha256 over the float model's state_dict (names, shapes, dtypes and values) in key order.

    Quantizer buffers (`amax`, `calib_amax`) are left out: calibration changes them, the float weights not.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.endswith("amax"):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class CalibrationCache:
    amax: dict                     # quantizer name -> float (per tensor) or list[float] (per channel)
    calibrator: dict               # CalibrationCache.describe() of the activation calibrator
    data: dict                     # what the windows were: recordings, count, seed, preprocess spec
    model_hash: str
    preset: str | None = None
    unused: list = field(default_factory=list)  # quantizers no window reached (inert): amax is ptq.UNUSED_AMAX
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                         .replace(microsecond=0).isoformat())

    def to_dict(self) -> dict:
        return {"schema": CACHE_SCHEMA, "preset": self.preset, "model_hash": self.model_hash,
                "calibrator": self.calibrator, "data": self.data, "created": self.created, "unused": self.unused,
                "amax": self.amax}

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "CalibrationCache":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise CalibrationCacheError(f"{path}: no such calibration cache (run `toolkit calibrate` to make one)")
        except (OSError, json.JSONDecodeError) as exc:
            raise CalibrationCacheError(f"{path}: not a readable calibration cache ({exc}); recalibrate") from None
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw, where="calibration cache") -> "CalibrationCache":
        """A cache from its `to_dict()` form (a JSON file, or the ranges a QAT checkpoint carries)."""
        if not isinstance(raw, dict) or raw.get("schema") != CACHE_SCHEMA or not isinstance(raw.get("amax"), dict):
            raise CalibrationCacheError(f"{where}: not a calibration cache of schema {CACHE_SCHEMA}; recalibrate")
        return cls(amax=raw["amax"], calibrator=raw.get("calibrator", {}), data=raw.get("data", {}),
                   model_hash=raw.get("model_hash", ""), preset=raw.get("preset"), unused=list(raw.get("unused", [])),
                   created=raw.get("created", ""))

    def check_model(self, model, where: str = "calibration cache",
                    fix: str = "recalibrate (`toolkit calibrate --weights THE_MODEL --out cal.json`), or export "
                               "the checkpoint the cache was made with") -> None:
        """Refuse a model whose float weights differ from the ones these ranges were calibrated on; the message
        names both hashes (`where` says whose ranges, `fix` what to do)."""
        actual = model_hash(model)
        if actual != self.model_hash:
            raise CalibrationCacheError(
                f"{where} was made for float weights with hash {self.model_hash[:16]}, but the model being used has "
                f"hash {actual[:16]} (different weights or a different model): {fix}")
