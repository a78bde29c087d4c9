"""The Stanford IMU FOG study's original workbooks (O'Day et al. 2022): 128 Hz, m/s^2, up to 11 IMUs, as recordings.

One sheet, a header row, then one row per sample: `subject_ID`, `time` (seconds on the clinic's clock), 11 IMUs x
(`ax`, `ay`, `az`, `gx`, `gy`, `gz`) named `imu_<place>_<axis>` (`deploy.stanford.IMUS`), `freeze_label` (1 = FOG;
0 and, in one published file, 2 = not FOG). One IMU is read (`stanford`: lumbar; `stanford-chest`, `stanford-ankle_l`,
...): AccV = `ax`, AccML = `ay`, AccAP = `az`, as the sensor gives them. The lumbar `ax` reads about -9.8 at rest, but
+9.6 in pt6's visit 19 (worn upside down): read as it is, no per-file setting; orientation is the model input's
business. Which horizontal axis is AP is not documented (`meta["axes"]` says so). The gyroscope (rad/s, same axes)
goes into `meta["gyro"]`; the subject comes from the file name (`pt6_visit_19_...` -> pt6; the `subject_ID` column
of that file says 20, the published numbering, kept as `meta["study_subject_id"]`).

Checked before anything is returned: the columns the IMU needs, every cell a number (an empty cell of the chosen IMU
is refused with its row and column; an IMU with no data at all is refused naming the IMUs that have data), time
strictly increasing at 128 Hz (median step within RATE_TOLERANCE of 1/128 s, no gaps), labels 0/1/2. Rows are the
sheet's row numbers (the header is row 1), columns the header's names with their Excel letter.

openpyxl (the `xlsx` extra, workstation side) reads the sheet in read-only mode, streaming rows; this module is the
only one that needs it, and imports it on first use.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from deploy.errors import DataError
from deploy.lazy import lazy_import
from deploy.stanford import IMUS, LAYOUT, imu_of, subject_of

openpyxl = lazy_import("openpyxl", "xlsx", "reading the Stanford IMU FOG workbooks (.xlsx)")

RATE_HZ = 128.0
RATE_TOLERANCE = 0.01          # relative: the workbooks' steps are 1/128 s to 1 us (time kept to 6 decimals)
GAP_STEPS = 1.5                # a step longer than this many sample periods is a gap (a lost stretch), refused
SIGNALS = ("ax", "ay", "az", "gx", "gy", "gz")
LABELS = {0: 0.0, 1: 1.0, 2: 0.0}   # freeze_label -> FOG; 2 means not FOG (the authors' loader maps it to 0)


def _fail(problem, path, row=None, column=None, fix=None):
    raise DataError(problem, file=str(path), row=row, column=column, fix=fix)


def _where(header: list[str], index: int) -> str:
    """A column as the header names it, with its Excel letter: "imu_lumbar_ax (I)"."""
    return f"{header[index]} ({openpyxl.utils.get_column_letter(index + 1)})"


def read_rows(path) -> tuple[list[str], list[tuple]]:
    """(header, data rows) of the workbook's first sheet, trailing empty rows dropped."""
    load = openpyxl.load_workbook      # MissingDependency (the xlsx extra) here, before any file is opened
    unreadable = (zipfile.BadZipFile, KeyError, OSError, ValueError, openpyxl.utils.exceptions.InvalidFileException)
    try:
        book = load(path, read_only=True, data_only=True)
    except unreadable as exc:
        _fail(f"not a readable Excel workbook ({type(exc).__name__}: {exc})", path,
              fix="pass the study's .xlsx files unchanged (or save the sheet again as .xlsx)")
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = next(rows, None)
        data = list(rows)
    finally:
        book.close()
    if not header:
        _fail("the workbook's first sheet is empty", path, fix="pass the study's .xlsx files unchanged")
    while data and all(v is None for v in data[-1]):
        data.pop()
    return [str(h).strip() if h is not None else "" for h in header], data


def _columns(header: list[str], imu: str, path) -> dict[str, int]:
    """Column index of time, freeze_label and the IMU's six signals; a missing one is refused."""
    if "time" not in header or "freeze_label" not in header:
        missing = "time" if "time" not in header else "freeze_label"
        _fail(f"missing column {missing!r}: not a Stanford IMU FOG workbook (header starts {header[:4]})", path,
              row=1, column=missing, fix="the study's workbooks have subject_ID, time, imu_<place>_<axis>..., "
              "freeze_label")
    wanted = {"time": "time", "freeze_label": "freeze_label", **{s: f"imu_{imu}_{s}" for s in SIGNALS}}
    for name in wanted.values():
        if name not in header:
            places = [p for p in IMUS if f"imu_{p}_ax" in header]
            _fail(f"missing column {name!r}", path, row=1, column=name,
                  fix=f"this workbook has the IMUs {', '.join(places) or 'none'}: choose one with --layout "
                      f"{LAYOUT}-<imu>")
    return {key: header.index(name) for key, name in wanted.items()}


def _table(rows: list[tuple], header: list[str], path) -> np.ndarray:
    """Every cell as float64 (empty -> NaN); a cell that is not a number is refused with its row and column."""
    width = len(header)
    try:
        return np.array([r[:width] + (None,) * (width - len(r)) for r in rows], dtype=np.float64)
    except (TypeError, ValueError):
        pass
    for r, row in enumerate(rows):
        for c, value in enumerate(row[:width]):
            if value is not None and not isinstance(value, (int, float)):
                try:
                    float(value)
                except (TypeError, ValueError):
                    _fail(f"cell {value!r} is not a number", path, row=r + 2, column=_where(header, c),
                          fix="every cell below the header must be a number or empty")
    raise AssertionError("unreachable: the table failed to convert but no cell is bad")  # pragma: no cover


def _imu_has_data(table: np.ndarray, header: list[str]) -> list[str]:
    return [p for p in IMUS if f"imu_{p}_ax" in header and np.isfinite(table[:, header.index(f"imu_{p}_ax")]).any()]


def _check_imu(table: np.ndarray, header: list[str], cols: dict, imu: str, path) -> None:
    signals = table[:, [cols[s] for s in SIGNALS]]
    if not np.isfinite(signals).any():
        with_data = _imu_has_data(table, header)
        _fail(f"the {imu} IMU is empty (no values in imu_{imu}_*); IMUs with data: {', '.join(with_data) or 'none'}",
              path, column=f"imu_{imu}_ax", fix=f"choose one of them with --layout {LAYOUT}-<imu>"
              + (f", e.g. --layout {LAYOUT}-{with_data[0]}" if with_data else ""))
    bad = ~np.isfinite(signals)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        value = signals[r, c]
        _fail("empty cell" if np.isnan(value) else f"value {value} is not a finite number", path, row=int(r) + 2,
              column=_where(header, cols[SIGNALS[c]]), fix="remove or interpolate missing samples before reading")


def _check_time(time: np.ndarray, header: list[str], column: int, path) -> None:
    bad = ~np.isfinite(time)
    if bad.any():
        _fail("empty or non-finite time", path, row=int(np.flatnonzero(bad)[0]) + 2, column=_where(header, column),
              fix="every sample needs its time in seconds")
    steps = np.diff(time)
    if len(steps) == 0:
        _fail("the workbook has fewer than two samples", path, fix="pass a whole trial")
    median = float(np.median(steps))
    if abs(median * RATE_HZ - 1.0) > RATE_TOLERANCE:
        rate = f"{1 / median:.4g} Hz" if median > 0 else "no rate"
        _fail(f"the median time step is {median:.6g} s ({rate}), not 1/128 s: this reader takes the study's 128 Hz "
              "workbooks", path, column=_where(header, column),
              fix="resample to 128 Hz, or export the recording as CSV with a column mapping (docs/data.md)")
    wrong = np.flatnonzero((steps <= 0) | (steps > GAP_STEPS / RATE_HZ))
    if wrong.size:
        r = int(wrong[0]) + 1
        problem = (f"time {time[r]:.6f} s does not increase after {time[r - 1]:.6f} s" if steps[wrong[0]] <= 0
                   else f"time jumps by {steps[wrong[0]]:.4f} s after {time[r - 1]:.6f} s (a gap of "
                        f"{steps[wrong[0]] * RATE_HZ - 1:.0f} samples)")
        _fail(problem, path, row=r + 2, column=_where(header, column),
              fix="the reader takes contiguous 128 Hz trials; split the workbook at the gap")


def _labels(table: np.ndarray, header: list[str], column: int, path) -> tuple[np.ndarray, int]:
    """(FOG 0/1 per sample, how many cells said 2)."""
    raw = table[:, column]
    known = np.isin(raw, list(LABELS))
    if not known.all():
        r = int(np.flatnonzero(~known)[0])
        _fail(f"freeze_label {'is empty' if np.isnan(raw[r]) else f'{raw[r]:g} is not 0, 1 or 2'}", path,
              row=r + 2, column=_where(header, column), fix="1 = freezing of gait; 0 (or 2) = not")
    return (raw == 1).astype(np.float64), int(np.sum(raw == 2))


def read_workbook(path, layout: str | None = None) -> dict:
    """The fields of a `deploy.recording.Recording` from one of the study's workbooks; `layout` chooses the IMU
    (`stanford` or None: lumbar; `stanford-<imu>`)."""
    path = Path(path)
    imu = imu_of(layout, path)
    header, rows = read_rows(path)
    if not rows:
        _fail("the workbook has a header but no data rows", path, fix="pass a whole trial")
    cols = _columns(header, imu, path)
    table = _table(rows, header, path)
    _check_imu(table, header, cols, imu, path)
    time = table[:, cols["time"]]
    _check_time(time, header, cols["time"], path)
    fog, twos = _labels(table, header, cols["freeze_label"], path)
    acc = table[:, [cols["ax"], cols["ay"], cols["az"]]]
    meta = {"source": str(path), "layout": LAYOUT if imu == "lumbar" else f"{LAYOUT}-{imu}", "id": path.stem,
            "subject": subject_of(path), "position": imu, "label_kind": "any", "lab": "stanford", "time_unit": "s",
            "axes": f"AccV = imu_{imu}_ax (about -9.8 m/s^2 at rest when worn upright, +9.8 upside down), AccML = "
                    f"imu_{imu}_ay, AccAP = imu_{imu}_az; which horizontal axis is anteroposterior is not documented",
            "gyro": table[:, [cols["gx"], cols["gy"], cols["gz"]]], "imus_with_data": _imu_has_data(table, header)}
    if "subject_ID" in header:
        ids = np.unique(table[:, header.index("subject_ID")])
        ids = ids[np.isfinite(ids)]
        if len(ids) == 1:
            meta["study_subject_id"] = int(ids[0]) if ids[0] == int(ids[0]) else float(ids[0])
    if twos:
        meta["labels_2_read_as_not_fog"] = twos
    return {"acc": acc, "rate_hz": RATE_HZ, "units": "m/s^2", "time": time,
            "labels": np.repeat(fog[:, None], 3, axis=1), "mask": None, "meta": meta}
