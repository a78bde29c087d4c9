"""The Stanford IMU FOG study's trials (O'Day et al. 2022, J NeuroEngineering Rehabil 19, 20): real freezes, lab two.

Two forms, one set of layout names (`stanford` = the lumbar IMU; `stanford-<imu>` another of the study's IMUS):
- the 64 Hz trial archives (`pt1_visit_24_tbc_walklr_0_trial_2.npz`), read here: `acc` (n, 3) m/s^2 with axis 0
  vertical (about -9.8 at rest, Kaggle's AccV sign), `gyro` (n, 3) rad/s, `fog` (n,) 1 = freezing, `rate_hz`;
  lumbar only;
- the study's original 128 Hz workbooks (`.xlsx`, 11 IMUs), read by `deploy.stanford_xlsx` (openpyxl, the `xlsx`
  extra: a workstation's reader, the device never needs it).

Mapped into the project's convention: AccV = axis 0, AccML = axis 1, AccAP = axis 2 (which horizontal axis is AP is
not documented: a model must not depend on it), m/s^2 kept as the unit. The label is untyped "freeze": written into
all three class columns with `meta["label_kind"] = "any"`, as Daphnet. The subject comes from the file name
(`pt6_visit_19_...` -> `pt6`); the gyroscope is kept in `meta["gyro"]` for a model that wants it.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from deploy.errors import DataError, closest

TRIAL_KEYS = ("acc", "fog", "rate_hz")      # what marks an npz as a Stanford trial (the project's npz has `units`)
_NAME = re.compile(r"^(pt\d+)_visit_", re.IGNORECASE)
# The study's IMUs in the workbooks' column order; the lumbar one matches Kaggle's lower-back sensor.
IMUS = ("chest", "lumbar", "ankle_l", "ankle_r", "foot_l", "foot_r", "head", "thigh_l", "thigh_r", "wrist_l", "wrist_r")
DEFAULT_IMU = "lumbar"
LAYOUT = "stanford"
LAYOUT_IMUS = {LAYOUT: DEFAULT_IMU, **{f"{LAYOUT}-{imu}": imu for imu in IMUS}}   # layout name -> IMU
# meta["axes"] of a 64 Hz trial: how its columns became AccV, AccML, AccAP, and what nobody knows
TRIAL_AXES = ("AccV = acc[:, 0] (each trial rotated by the public copy so gravity reads -9.8 m/s^2 along it), "
              "AccML = acc[:, 1], AccAP = acc[:, 2]; which horizontal axis is anteroposterior is not documented")


def subject_of(path) -> str:
    """pt6_visit_19_tbc_walklr_0_trial_2.npz -> pt6 (the file's stem when the name does not follow the study's)."""
    match = _NAME.match(Path(path).stem)
    return match.group(1).lower() if match else Path(path).stem


def imu_of(layout: str | None, path=None) -> str:
    """The IMU a layout name asks for: None or `stanford` -> lumbar, `stanford-chest` -> chest."""
    if layout is None:
        return DEFAULT_IMU
    if layout not in LAYOUT_IMUS:
        close = closest(layout, LAYOUT_IMUS)
        _fail(f"unknown Stanford layout {layout!r}" + (f" (did you mean {close!r}?)" if close else ""), path,
              fix=f"use {LAYOUT!r} (the lumbar IMU) or {LAYOUT}-<imu> with <imu> one of {', '.join(IMUS)}")
    return LAYOUT_IMUS[layout]


def check_layout(path, layout: str | None, mapping=None) -> None:
    """A Stanford file (.xlsx or .npz) asked for with a Stanford layout or none, and no mapping; else a clear error."""
    if str(layout).startswith(LAYOUT):
        imu_of(layout, path)                   # an unknown stanford-<imu> is named, with the nearest
    if layout not in (None, *LAYOUT_IMUS) or mapping is not None:
        _fail(f"a Stanford IMU FOG workbook or trial is read with layout {LAYOUT!r} or {LAYOUT}-<imu>, not with "
              f"{'a mapping' if mapping is not None else f'layout {layout!r}'}", path,
              fix="drop --layout/--mapping, or pass --layout stanford-<imu>; other spreadsheets: save as CSV")
    suffix = Path(path).suffix.lower()
    if suffix not in (".xlsx", ".npz"):
        _fail(f"layout {layout!r} reads the Stanford study's workbooks (.xlsx) and 64 Hz trial archives (.npz), not "
              f"{suffix or 'a file without an extension'}", path, fix="drop --layout for other files")


def is_trial(arrays: dict) -> bool:
    """True for a Stanford 64 Hz trial archive (acc, fog, rate_hz and no `units`)."""
    return all(k in arrays for k in TRIAL_KEYS) and "units" not in arrays


def _fail(problem, path, column=None, row=None, fix=None):
    raise DataError(problem, file=str(path), row=row, column=column, fix=fix)


def _array(arrays: dict, key: str, path, shape_tail: tuple) -> np.ndarray:
    value = arrays[key]
    if value.dtype.kind not in "fiu" or value.shape[1:] != shape_tail:
        _fail(f"array {key!r} is {value.dtype} with shape {value.shape}, expected numbers of shape (n, "
              f"{', '.join(map(str, shape_tail))})" if shape_tail else f"array {key!r} has shape {value.shape}",
              path, column=key, fix="pass the study's trial archives unchanged")
    bad = ~np.isfinite(value.astype(np.float64))
    if bad.any():
        where = np.argwhere(bad)[0]
        _fail(f"value {value[tuple(where)]} of {key!r} is not a finite number", path, column=key, row=int(where[0]),
              fix="remove or interpolate missing samples before reading")
    return value


def read_trial(path, arrays: dict, layout: str | None = None) -> dict:
    """The fields of a `deploy.recording.Recording` from a 64 Hz trial archive's arrays (the lumbar IMU: the only
    one these archives hold, so a layout naming another IMU is refused)."""
    if imu_of(layout, path) != DEFAULT_IMU:
        _fail(f"the 64 Hz trial archives hold the lumbar IMU only, not {imu_of(layout, path)!r}", path,
              fix="read the study's original workbook (.xlsx) for the other IMUs, or drop --layout")
    acc = _array(arrays, "acc", path, (3,)).astype(np.float64)
    fog = _array(arrays, "fog", path, ()).astype(np.float64)
    if fog.ndim != 1 or len(fog) != len(acc):
        _fail(f"`fog` has shape {fog.shape} but `acc` has {len(acc)} rows", path, column="fog",
              fix="one label per sample")
    unknown = ~np.isin(fog, (0, 1))
    if unknown.any():
        r = int(np.flatnonzero(unknown)[0])
        _fail(f"label {fog[r]:g} is not 0 or 1", path, column="fog", row=r, fix="1 = freezing, 0 = not")
    rate = arrays["rate_hz"]
    if rate.ndim != 0 or rate.dtype.kind not in "fiu" or not np.isfinite(rate) or float(rate) <= 0:
        _fail(f"rate_hz {rate!r} is not a positive number", path, column="rate_hz", fix="store the rate in Hz")
    meta = {"source": str(path), "layout": "stanford", "id": Path(path).stem, "subject": subject_of(path),
            "position": DEFAULT_IMU, "label_kind": "any", "lab": "stanford", "axes": TRIAL_AXES}
    if "gyro" in arrays:
        meta["gyro"] = _array(arrays, "gyro", path, (3,)).astype(np.float64)
    return {"acc": acc, "rate_hz": float(rate), "units": "m/s^2", "time": None,
            "labels": np.repeat(fog[:, None], 3, axis=1), "mask": None, "meta": meta}


def check_each_trial_once(recordings) -> None:
    """Refuse recordings that hold one trial twice (its workbook and its 64 Hz archive: the same freezes, counted
    twice in training and scoring)."""
    sources: dict[str, list[str]] = {}
    for rec in recordings:
        if rec.meta.get("lab") == "stanford":
            sources.setdefault(str(rec.meta.get("id")), []).append(str(rec.meta.get("source")))
    twice = {trial: files for trial, files in sources.items() if len(files) > 1}
    if twice:
        trial, files = next(iter(twice.items()))
        raise DataError(f"{len(twice)} Stanford trial(s) are given twice, e.g. {trial} as {' and '.join(files)}: "
                        "the workbooks are the same trials as the 64 Hz archives", file=files[0],
                        fix="pass one form of each trial (one of the two folders)")
