"""Recordings for cohort scoring: find them, say who they belong to, and read them in chunks.

Kaggle's `unlabeled/*.parquet` (Time, AccV, AccML, AccAP; 100 Hz, g) is read row group by row group with pyarrow, so a
week of 24/7 data never sits in memory. Every other recording (CSV layouts, npz, Daphnet text: whatever
`deploy.recording.read_recording` reads) is read whole by that function and then handed out in chunks.

Who a recording belongs to is what the data says (deploy.subjects: a metadata table beside or above it, such as
Kaggle's `daily_metadata.csv`, or `--metadata`; the dataset's file names; a `participant_metadata.json` naming its
folders), the file itself only when nothing names a person; each source says which (`subject_from`). A table also
gives the `Visit` and, for daily recordings, the time of day the recording began (`Beginning of recording
[00:00-23:59]`), which places each sample on a calendar day.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.errors import DataError, MissingDependency
from deploy.layouts import AXES
from deploy.subjects import FROM_FILE, Owners, unique_names

PARQUET = ".parquet"
# Parquet files carry no rate or units: these keys in the file's metadata give them (write_parquet sets them);
# without them, Kaggle's convention decides (as for its test CSVs: gravity ~1 -> 100 Hz in g, ~9.8 -> 128 Hz m/s^2).
RATE_KEY, UNITS_KEY = b"fog.rate_hz", b"fog.units"


def _recording_suffixes() -> tuple[str, ...]:
    import deploy.recording as recording
    return tuple(getattr(recording, "RECORDING_SUFFIXES", (".csv", ".npz"))) + (PARQUET,)


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingDependency("pyarrow", "score", "reading and writing Parquet") from None
    return pyarrow


@dataclass
class RecordingFile:
    """One recording to score: where it is, whose it is, and how to read it in chunks."""
    path: Path
    subject: str
    visit: str = ""
    start_of_day_s: float | None = None   # seconds after midnight when the recording began, if known
    rate_hz: float | None = None          # known up front for Parquet and npz; else after reading
    units: str | None = None
    n_samples: int | None = None
    label: str | None = None              # the name in the tables; the file's stem (its Id) unless two clash
    subject_from: str = FROM_FILE         # where `subject` came from (deploy.subjects)

    @property
    def name(self) -> str:
        return self.label or self.path.stem

    @property
    def is_parquet(self) -> bool:
        return self.path.suffix.lower() == PARQUET

    def estimate_s(self) -> float:
        """Length in seconds of signal: exact for Parquet (its footer says); else from the file's size, for text with
        the bytes per row of its first 64 KiB, at the rate its kind usually has (Daphnet's .txt 64 Hz, a CSV 100 Hz).
        Only the progress bar's first total: a recording's exact length replaces it once a worker has opened it."""
        if self.n_samples and self.rate_hz:
            return self.n_samples / self.rate_hz
        size, suffix = self.path.stat().st_size, self.path.suffix.lower()
        if suffix == ".xlsx":                             # a Stanford workbook: ~550 bytes per 128 Hz row, 11 IMUs
            return size / 550 / 128.0
        if suffix in (".csv", ".txt"):
            with open(self.path, "rb") as fh:
                head = fh.read(1 << 16)
            row_bytes = len(head) / max(1, head.count(b"\n"))
            return size / max(row_bytes, 1.0) / (64.0 if suffix == ".txt" else 100.0)
        return size / 40 / 100.0

    def open(self) -> "Reader":
        return ParquetReader(self) if self.is_parquet else MemoryReader(self)


class Reader:
    rate_hz: float
    units: str
    n_samples: int

    def chunks(self, rows: int):
        raise NotImplementedError


class MemoryReader(Reader):
    """Anything `deploy.recording.read_recording` reads, whole, handed out in chunks."""

    def __init__(self, source: RecordingFile):
        from deploy.recording import read_recording
        self.recording = read_recording(source.path)
        self.rate_hz, self.units, self.n_samples = self.recording.rate_hz, self.recording.units, \
            self.recording.n_samples

    def chunks(self, rows: int):
        acc = self.recording.acc
        for i in range(0, len(acc), rows):
            yield acc[i:i + rows]


class ParquetReader(Reader):
    """AccV, AccML, AccAP of a Parquet file, batch by batch (pyarrow reads one row group at a time)."""

    def __init__(self, source: RecordingFile):
        pa = _pyarrow()
        self.path = source.path
        try:
            # no pre-buffering and a 1 MiB read buffer: pages stream in as they are decoded, so memory stays
            # small even for a file written as one row group (a week = 60 M rows); measured in docs/score.md
            self.file = pa.parquet.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20)
        except Exception as exc:  # pyarrow's ArrowInvalid and friends
            raise DataError(f"not a readable Parquet file ({exc})", file=str(self.path),
                            fix="check the file was copied whole") from None
        names = self.file.schema_arrow.names
        missing = [a for a in AXES if a not in names]
        if missing:
            raise DataError(f"missing columns {missing} (Parquet recordings need {list(AXES)})", file=str(self.path),
                            column=missing[0], fix=f"the file's columns are {names}")
        self.n_samples = self.file.metadata.num_rows
        if self.n_samples == 0:
            raise DataError("the file has no rows", file=str(self.path))
        meta = self.file.schema_arrow.metadata or {}
        if RATE_KEY in meta and UNITS_KEY in meta:
            self.rate_hz, self.units = float(meta[RATE_KEY]), meta[UNITS_KEY].decode()
        else:
            from deploy.recording import _infer_test_rate_units  # Kaggle's convention, one home for it
            first = next(self._batches(min(self.n_samples, 10_000)))
            self.rate_hz, self.units = _infer_test_rate_units(first)

    def _batches(self, rows: int):
        done = 0
        for batch in self.file.iter_batches(batch_size=rows, columns=list(AXES), use_threads=False):
            acc = np.column_stack([batch.column(a).to_numpy(zero_copy_only=False).astype(np.float64)
                                   for a in AXES])
            bad = ~np.isfinite(acc)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise DataError(f"value {acc[r, c]} is not a finite number", file=str(self.path),
                                row=done + int(r), column=AXES[c],
                                fix="remove or interpolate missing samples before scoring")
            done += len(acc)
            yield acc

    def chunks(self, rows: int):
        yield from self._batches(rows)


def write_parquet(recording, path, row_group_rows: int = 1_000_000) -> Path:
    """A recording as Kaggle-style Parquet (Time = sample index, AccV, AccML, AccAP), with its rate and units in the
    file's metadata, in row groups of `row_group_rows`."""
    pa = _pyarrow()
    acc = recording.acc
    table = pa.table({"Time": np.arange(len(acc), dtype=np.int64),
                      **{a: np.ascontiguousarray(acc[:, i]) for i, a in enumerate(AXES)}})
    table = table.replace_schema_metadata({RATE_KEY: str(float(recording.rate_hz)).encode(),
                                           UNITS_KEY: recording.units.encode()})
    pa.parquet.write_table(table, path, row_group_size=row_group_rows)
    return Path(path)


# ------------------------------------------------------------------ finding recordings and their owners

def find_recording_files(paths, metadata=None) -> list[RecordingFile]:
    """Sources for files and folders (folders searched recursively; metadata files skipped), sorted by path."""
    from deploy.recording import NOT_RECORDINGS
    suffixes = _recording_suffixes()
    files, roots = [], []
    for p in map(Path, paths):
        if p.is_dir():
            roots.append(p)
            files += [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                      and f.name.lower() not in NOT_RECORDINGS]
        elif p.is_file():
            roots.append(p.parent)
            files.append(p)
        else:
            raise DataError("no such file or folder", file=str(p),
                            fix=f"give recordings ({', '.join(suffixes)}) or folders of them")
    files = sorted(set(files))
    if not files:
        raise DataError(f"no recordings found ({', '.join(suffixes)})", file=", ".join(map(str, paths)) or None)
    owners = Owners(roots, metadata)
    sources = []
    for f in files:
        owner = owners.of(f)
        src = RecordingFile(f, subject=owner.subject, visit=owner.visit, start_of_day_s=owner.start_of_day_s,
                     subject_from=owner.source)
        if src.is_parquet:
            _parquet_header(src)
        sources.append(src)
    names = unique_names(files)      # two files with one Id: named by their paths from the folder they share
    for src in sources:
        src.label = names[src.path] if names[src.path] != src.path.stem else None
    return sources


def _parquet_header(src: RecordingFile) -> None:
    """n_samples (and rate/units when the file says) from the footer, without reading data."""
    try:
        pa = _pyarrow()
        pf = pa.parquet.ParquetFile(src.path)
    except Exception:
        return                     # reported properly when the recording is read
    src.n_samples = pf.metadata.num_rows
    meta = pf.schema_arrow.metadata or {}
    if RATE_KEY in meta:
        src.rate_hz = float(meta[RATE_KEY])
    else:
        src.rate_hz = 100.0        # Kaggle's daily recordings; only used for the progress estimate
