"""Recordings: one lower-back accelerometer series with its rate, units, labels and masks.

Readers and writers for the Kaggle FOG CSV layouts (`tdcsfog`, `defog`, `test`), a compact `npz` form, any
other CSV through a column/axis mapping (`deploy.layouts`, e.g. `mobgap`), and the Daphnet text files with real
freezes (`deploy.daphnet`; layouts `daphnet`, `daphnet-ankle`, `daphnet-thigh`), and the Stanford IMU FOG study's
64 Hz trial archives (`deploy.stanford`, .npz) and original 128 Hz workbooks (`deploy.stanford_xlsx`, .xlsx; layouts
`stanford` = the lumbar IMU, `stanford-<imu>` another). Bad files raise `DataError` naming the file, the row (the
line number in the file, or the sheet's row; the header is line 1), the column, and what to do.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from deploy import daphnet, stanford, stanford_xlsx
from deploy.cells import locate_bad_cell
from deploy.errors import DataError
from deploy.layouts import AXES, BINARY_LAYOUTS, CLASSES, LAYOUTS, MAPPINGS, UNITS, ColumnMapping, detect_layout

__all__ = ["AXES", "CLASSES", "STANDARD_GRAVITY", "Recording", "read_recording", "write_recording"]

STANDARD_GRAVITY = 9.80665  # m/s^2 per g


@dataclass
class Recording:
    """acc: (n, 3) in AXES order; time: the file's own time column (None if it had none); labels: (n, 3) in CLASSES
    order; mask: (n,) bool, True where labels count (defog Valid & Task); meta: free-form (source file, subject...)."""
    acc: np.ndarray
    rate_hz: float
    units: str
    time: np.ndarray | None = None
    labels: np.ndarray | None = None
    mask: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.acc = np.asarray(self.acc, dtype=np.float64)
        if self.acc.ndim != 2 or self.acc.shape[1] != 3:
            raise DataError(f"acc must have shape (n, 3) in the order {AXES}, got {self.acc.shape}")
        if self.units not in UNITS:
            raise DataError(f"unknown units {self.units!r}", fix=f"use one of {UNITS}")
        if not self.rate_hz or self.rate_hz <= 0:
            raise DataError(f"rate_hz must be positive, got {self.rate_hz!r}")
        n = len(self.acc)
        for name in ("time", "labels", "mask"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(f"{name} has {len(value)} rows but acc has {n}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.float64).reshape(n, len(CLASSES))
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool)

    @property
    def n_samples(self) -> int:
        return len(self.acc)

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.rate_hz

    def to_units(self, units: str) -> "Recording":
        """The same recording in other units (explicit: nothing converts silently)."""
        from deploy.preprocess import convert_units
        return replace(self, acc=convert_units(self.acc, self.units, units), units=units, meta=dict(self.meta))


# ---------------------------------------------------------------- reading

def _fail(problem, path, row=None, column=None, fix=None):
    raise DataError(problem, file=str(path), row=row, column=column, fix=fix)


def _parse_table(text: str, path, header: list[str]) -> np.ndarray:
    """All cells as float64 (true/false as 1/0). Fast path through np.loadtxt; on failure find the bad cell."""
    body = text.split("\n", 1)[1] if "\n" in text else ""
    if not body.strip():
        _fail("the file has a header but no data rows", path, fix="check that the recording was exported fully")
    if re.search(r"(?i)true|false", body):
        # str.replace is ~20x faster than a regex over a 20 MB file; other spellings fall to the exact scan.
        for word, digit in (("true", "1"), ("True", "1"), ("TRUE", "1"), ("false", "0"), ("False", "0"),
                            ("FALSE", "0")):
            if word in body:
                body = body.replace(word, digit)
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        _locate_bad_cell(body, path, header)
        raise  # not reached: _locate_bad_cell always raises
    if table.size == 0:
        _fail("the file has a header but no data rows", path, fix="check that the recording was exported fully")
    if table.shape[1] != len(header):
        _fail(f"rows have {table.shape[1]} cells but the header names {len(header)} columns", path,
              fix="every row needs one value per header column")
    return table


def _locate_bad_cell(body: str, path, header: list[str]):
    locate_bad_cell(body, header, path, first_row=2, separator=",", what="cells",
                    count_fix="every row needs one value per header column",
                    value_fix="every cell must be a number (Valid/Task may be true/false)")


def _check_finite(values: np.ndarray, names: list[str], path):
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        _fail(f"value {values[r, c]} is not a finite number", path, row=int(r) + 2, column=names[c],
              fix="remove or interpolate missing samples before reading")


def _check_time(time: np.ndarray, path, column: str):
    steps = np.diff(time)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        r = int(bad[0]) + 1
        kind = "duplicate" if steps[bad[0]] == 0 else "decreasing"
        _fail(f"{kind} time {time[r]} after {time[r - 1]}", path, row=r + 2, column=column,
              fix="time must strictly increase; sort the rows and drop repeated samples")


def _infer_test_rate_units(acc: np.ndarray) -> tuple[float, str]:
    """Kaggle test files carry no rate: tdcsfog ones (128 Hz) are in m/s^2, defog ones (100 Hz) in g."""
    gravity = float(np.median(np.linalg.norm(acc, axis=1)))
    return (128.0, "m/s^2") if gravity > 4.0 else (100.0, "g")


def read_recording(path, layout: str | None = None, mapping=None, rate_hz: float | None = None,
                   units: str | None = None) -> Recording:
    """Read a recording. `layout`: tdcsfog, defog, test, npz, daphnet (daphnet-ankle, daphnet-thigh), stanford
    (stanford-<imu>: which IMU of a Stanford workbook), or a mapping name (mobgap); None detects it from the
    extension, the header or (Daphnet) the first line. `mapping`: a ColumnMapping, its dict form, or a name in
    deploy.layouts.MAPPINGS. `rate_hz`/`units` override what the layout implies (needed for test files from unknown
    sources)."""
    path = Path(path)
    if not path.is_file():
        _fail("no such file", path, fix="check the path")
    suffix = path.suffix.lower()
    if suffix == ".xlsx" or layout in stanford.LAYOUT_IMUS:
        return _read_stanford(path, layout, mapping, suffix)
    if layout == "npz" or (layout is None and mapping is None and suffix == ".npz"):
        return _read_npz(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of a name
    except UnicodeDecodeError:
        _fail("not a text (CSV) file", path, fix="pass layout='npz' for binary recordings, else a CSV file")
    if not text.strip():
        _fail("the file is empty", path, fix="check that the recording was exported fully")
    first_line = text.split("\n", 1)[0].rstrip("\r")
    if layout in daphnet.LAYOUT_POSITIONS or (layout is None and mapping is None
                                               and daphnet.looks_like_daphnet(first_line)):
        return Recording(**daphnet.read_daphnet(path, text, daphnet.LAYOUT_POSITIONS.get(layout, "trunk"), rate_hz))
    return read_csv_text(path, text, layout, mapping, rate_hz, units)


def _read_stanford(path, layout, mapping, suffix) -> Recording:
    """A Stanford workbook (.xlsx) or 64 Hz trial archive (.npz); `layout` names the IMU."""
    stanford.check_layout(path, layout, mapping)
    if suffix == ".xlsx":
        return Recording(**stanford_xlsx.read_workbook(path, layout))
    return _read_npz(path, layout)


def read_csv_text(path, text: str, layout: str | None = None, mapping=None, rate_hz: float | None = None,
                  units: str | None = None) -> Recording:
    """A CSV recording (a Kaggle layout or a mapping) from its text, header first; `path` names it in errors.
    (`deploy.blocks` reads long files through this, a block of rows at a time.)"""
    first_line = text.split("\n", 1)[0].rstrip("\r")
    header = [h.strip().strip('"') for h in first_line.split(",")]
    if mapping is None and layout in MAPPINGS:
        mapping = layout
    if mapping is not None:
        return _read_mapped(path, text, header, mapping, rate_hz, units)
    if layout is None:
        layout = detect_layout(header)
        if layout is None:
            _fail(f"unknown layout: header {header[:10]} matches none of {sorted(LAYOUTS) + sorted(MAPPINGS)}",
                  path, fix="pass layout=... or a column mapping (see deploy/layouts.py)")
        if layout in MAPPINGS:
            return _read_mapped(path, text, header, layout, rate_hz, units)
    if layout not in LAYOUTS:
        _fail(f"unknown layout {layout!r}", path, fix=f"use one of {sorted(LAYOUTS) + list(BINARY_LAYOUTS)}, "
              f"{sorted(daphnet.LAYOUT_POSITIONS)}, {stanford.LAYOUT}[-<imu>] or a mapping {sorted(MAPPINGS)}")
    spec = LAYOUTS[layout]
    for column in spec.columns:
        if column not in header:
            _fail(f"missing column {column!r} (the {layout} layout needs {list(spec.columns)})", path,
                  column=column, fix="check the file's header or pass the right layout")
    table = _parse_table(text, path, header)
    _check_finite(table, header, path)
    col = {name: table[:, header.index(name)] for name in spec.columns}
    time = col["Time"]
    _check_time(time, path, "Time")
    acc = np.stack([col[a] for a in AXES], axis=1)
    if spec.rate_hz is None:
        inferred_rate, inferred_units = _infer_test_rate_units(acc)
    rate = rate_hz or spec.rate_hz or inferred_rate
    unit = units or spec.units or inferred_units
    labels = np.stack([col[c] for c in CLASSES], axis=1) if spec.labelled else None
    mask = ((col["Valid"] != 0) & (col["Task"] != 0)) if spec.masked else None
    meta = {"source": str(path), "layout": layout, "id": path.stem}
    if spec.masked:
        meta["valid"] = col["Valid"] != 0
        meta["task"] = col["Task"] != 0
    return Recording(acc, rate, unit, time=time, labels=labels, mask=mask, meta=meta)


# Files a dataset folder carries beside its recordings (Kaggle's and `toolkit synth --out-dir`'s): never recordings.
NOT_RECORDINGS = frozenset({"metadata.csv", "tdcsfog_metadata.csv", "defog_metadata.csv", "daily_metadata.csv",
                            "subjects.csv", "events.csv", "tasks.csv", "sample_submission.csv"})
RECORDING_SUFFIXES = (".csv", ".npz", ".txt", ".xlsx")
WHOLE_FILE_SUFFIXES = (".npz", ".xlsx")   # binary: read whole (a CSV can be replayed a block of rows at a time)


def is_recording_file(path) -> bool:
    """A file a folder scan reads: a recording suffix, not a metadata table, not an editor's lock file (~$x.xlsx)."""
    name = Path(path).name.lower()
    return Path(path).suffix.lower() in RECORDING_SUFFIXES and name not in NOT_RECORDINGS and not name.startswith("~$")


def read_recordings(paths, layout: str | None = None, mapping=None) -> list[Recording]:
    """Recordings from files and folders (folders: every .csv/.npz/.txt/.xlsx below, sorted, metadata files
    skipped; .txt files are Daphnet recordings, .xlsx files Stanford workbooks), each with the subject the data
    names (deploy.subjects) in meta["subject"] and where that came from in meta["subject_from"]."""
    from deploy.subjects import Owners, unique_names
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and is_recording_file(f))
        elif p.exists():
            files.append(p)
        else:
            raise DataError("no such file or folder", file=p,
                            fix="give recordings (.csv, .npz, Daphnet .txt, Stanford .xlsx) or folders of them")
    if not files:
        raise DataError("no recordings found (.csv, .npz, Daphnet .txt or Stanford .xlsx)",
                        file=", ".join(map(str, paths)) or None)
    owners, names = Owners([p if p.is_dir() else p.parent for p in map(Path, paths)]), unique_names(files)
    recordings = []
    for f in files:
        rec = read_recording(f, layout=layout, mapping=mapping)
        rec.meta.setdefault("name", names[f])
        owners.mark(rec.meta, f)
        recordings.append(rec)
    stanford.check_each_trial_once(recordings)
    return recordings


def _read_mapped(path, text, header, mapping, rate_hz, units) -> Recording:
    name = mapping if isinstance(mapping, str) else "custom"
    if isinstance(mapping, str):
        if mapping not in MAPPINGS:
            _fail(f"unknown mapping {mapping!r}", path, fix=f"use one of {sorted(MAPPINGS)} or pass a dict")
        mapping = MAPPINGS[mapping]
    elif isinstance(mapping, dict):
        try:
            mapping = ColumnMapping.from_dict(mapping)
        except (KeyError, ValueError) as exc:
            _fail(f"bad column mapping: {exc}", path, fix="see deploy/layouts.py for the mapping keys")
    needed = [mapping.axis_source(a)[0] for a in AXES] + ([mapping.time] if mapping.time else [])
    needed += list(mapping.labels.values())
    for column in needed:
        if column not in header:
            _fail(f"missing column {column!r} named by the {name} mapping", path, column=column,
                  fix=f"the file's columns are {header}")
    table = _parse_table(text, path, header)
    _check_finite(table, header, path)
    acc = np.stack([sign * table[:, header.index(column)] for column, sign in map(mapping.axis_source, AXES)], 1)
    time = None
    if mapping.time:
        time = table[:, header.index(mapping.time)]
        _check_time(time, path, mapping.time)
    labels = None
    if mapping.labels:
        labels = np.stack([table[:, header.index(mapping.labels[c])] if c in mapping.labels
                           else np.zeros(len(acc)) for c in CLASSES], axis=1)
    meta = {"source": str(path), "layout": name, "id": path.stem, "time_unit": mapping.time_unit}
    return Recording(acc, rate_hz or mapping.rate_hz, units or mapping.units, time=time, labels=labels, meta=meta)


MAX_NPZ_BYTES = 2 << 30   # unpacked; a 10 h recording at 128 Hz is ~0.1 GB


def _npz_arrays(path) -> dict:
    """The archive's arrays, refused before loading when it is not a zip or would unpack to more than MAX_NPZ_BYTES."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        _fail(f"not a readable npz recording ({exc})", path, fix="write it with write_recording(rec, path, 'npz')")
    if unpacked > MAX_NPZ_BYTES:
        _fail(f"the archive unpacks to {unpacked / 2**30:.1f} GiB (limit {MAX_NPZ_BYTES / 2**30:.0f} GiB)", path,
              fix="split the recording, or replay it as CSV (read in blocks)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        _fail(f"not a readable npz recording ({exc})", path, fix="write it with write_recording(rec, path, 'npz')")


def _npz_numeric(data: dict, key: str, path, ndim: int | None = None) -> np.ndarray | None:
    value = data.get(key)
    if value is None:
        return None
    if value.dtype.kind not in "fiub" or (ndim is not None and value.ndim != ndim):
        _fail(f"npz array {key!r} is {value.dtype} with shape {value.shape}, not numbers"
              + (f" in {ndim} dimension(s)" if ndim else ""), path, column=key,
              fix="write it with write_recording(rec, path, 'npz')")
    return value


def _read_npz(path, layout: str | None = None) -> Recording:
    data = _npz_arrays(path)
    if stanford.is_trial(data):
        return Recording(**stanford.read_trial(path, data, layout))
    if layout is not None:
        _fail(f"layout {layout!r}: this archive is not one of the Stanford study's 64 Hz trials (it has "
              f"{sorted(data)}, a trial has {list(stanford.TRIAL_KEYS)} and no 'units')", path,
              fix="drop --layout")
    for key in ("acc", "rate_hz", "units"):
        if key not in data:
            _fail(f"npz recording lacks the array {key!r}", path, fix="write it with write_recording(..., 'npz')")
    acc = _npz_numeric(data, "acc", path, ndim=2)
    rate = _npz_numeric(data, "rate_hz", path, ndim=0)
    if rate.dtype.kind == "b" or not np.isfinite(rate) or rate <= 0:
        _fail(f"rate_hz {rate} is not a positive finite number", path, column="rate_hz",
              fix="store the sensor's rate in Hz")
    if data["units"].dtype.kind != "U" or str(data["units"]) not in UNITS:
        _fail(f"units {data['units']!r} are not one of {UNITS}", path, column="units", fix="store 'g' or 'm/s^2'")
    try:
        meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except json.JSONDecodeError as exc:
        _fail(f"meta is not valid JSON ({exc})", path, column="meta", fix="store meta as json.dumps(dict)")
    if not isinstance(meta, dict):
        _fail("meta is not a JSON object", path, column="meta", fix="store meta as json.dumps(dict)")
    for key in [k for k in data if k.startswith("meta_")]:
        meta[key[5:]] = data[key]
    # `source` is the file read, as every reader says; where the stored recording came from stays as `origin`
    if meta.get("source") not in (None, str(path)):
        meta.setdefault("origin", meta["source"])
    meta["source"] = str(path)
    return Recording(acc, float(rate), str(data["units"]), time=_npz_numeric(data, "time", path, ndim=1),
                     labels=_npz_numeric(data, "labels", path), mask=_npz_numeric(data, "mask", path, ndim=1),
                     meta=meta)


# ---------------------------------------------------------------- writing

def _format_column(values: np.ndarray) -> np.ndarray:
    """Shortest text that parses back to the same float64; integers without a decimal point."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(values == np.round(values)) and np.all(np.abs(values) < 2 ** 53):
        return values.astype(np.int64).astype(str)
    return values.astype(str)


def write_recording(rec: Recording, path, layout: str) -> Path:
    """Write `rec` as `layout` (tdcsfog, defog, test, npz). The CSV layouts imply a rate and units: a recording in
    other units or at another rate is refused (convert explicitly with rec.to_units / preprocess.resample)."""
    path = Path(path)
    if layout == "npz":
        arrays = {"acc": rec.acc, "rate_hz": np.float64(rec.rate_hz), "units": np.str_(rec.units)}
        for name in ("time", "labels", "mask"):
            if getattr(rec, name) is not None:
                arrays[name] = getattr(rec, name)
        plain = {k: v for k, v in rec.meta.items() if not isinstance(v, np.ndarray)}
        arrays["meta"] = np.str_(json.dumps(plain, default=str))
        arrays.update({f"meta_{k}": v for k, v in rec.meta.items() if isinstance(v, np.ndarray)})
        np.savez_compressed(path, **arrays)
        return path
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}", file=str(path), fix=f"use one of {sorted(LAYOUTS)} or npz")
    spec = LAYOUTS[layout]
    if spec.units is not None and rec.units != spec.units:
        raise DataError(f"the {layout} layout is in {spec.units} but the recording is in {rec.units}",
                        file=str(path), fix=f"convert explicitly: rec.to_units({spec.units!r})")
    if spec.rate_hz is not None and rec.rate_hz != spec.rate_hz:
        raise DataError(f"the {layout} layout is {spec.rate_hz:g} Hz but the recording is {rec.rate_hz:g} Hz",
                        file=str(path), fix="resample explicitly with deploy.preprocess.resample")
    if spec.labelled and rec.labels is None:
        raise DataError(f"the {layout} layout needs labels and the recording has none", file=str(path),
                        fix="write it as layout 'test' or 'npz'")
    time = rec.time if rec.time is not None else np.arange(rec.n_samples)
    columns = [_format_column(time)] + [_format_column(rec.acc[:, i]) for i in range(3)]
    if spec.labelled:
        columns += [_format_column(rec.labels[:, i]) for i in range(3)]
    if spec.masked:
        valid = rec.meta.get("valid", rec.mask if rec.mask is not None else np.ones(rec.n_samples, bool))
        task = rec.meta.get("task", rec.mask if rec.mask is not None else np.ones(rec.n_samples, bool))
        columns += [np.where(np.asarray(valid, bool), "true", "false"), np.where(np.asarray(task, bool), "true", "false")]
    lines = [",".join(spec.columns)] + [",".join(row) for row in zip(*columns)]
    path.write_text("\n".join(lines) + "\n")
    return path
