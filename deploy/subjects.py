"""Whose a recording is: the person as the data names them, and where that name came from.

Figures that are "per subject" (cohort summaries, subject-wise splits, evaluate's count of people) must count people,
not files: Daphnet's S02R01 and S02R02 are one person, and three mobgap people each have a `TimeMeasure1_Test5_Trial1.csv`.
The first of these that names a person decides (`Owner.source` says which):

1. a metadata table beside the file or in a folder above it (Kaggle's `tdcsfog_metadata.csv`, `defog_metadata.csv`,
   `daily_metadata.csv`, `toolkit synth`'s `metadata.csv`, or one given explicitly): its `Id` (the file name without
   extension) -> `Subject`, with `Visit` and, for daily recordings, the time of day the recording began;
2. the dataset's own file names: Daphnet's `S02R01` -> `S02`, the Stanford study's `pt6_visit_19_...` -> `pt6`;
3. a `participant_metadata.json` above the file whose keys are the folders it sits in (mobgap:
   `HA/001/TimeMeasure1_Test5_Trial1.csv` -> `HA-001`);
4. nothing: the file itself stands for its person (`source` "file"), which callers say aloud.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from deploy import daphnet, stanford
from deploy.errors import DataError

METADATA_FILES = ("daily_metadata.csv", "defog_metadata.csv", "tdcsfog_metadata.csv", "metadata.csv")
PARTICIPANTS_FILE = "participant_metadata.json"
FROM_FILE = "file"     # Owner.source when nothing names a person
PARTICIPANT_DEPTH = 4  # folders above a file searched for PARTICIPANTS_FILE (mobgap: cohort/id/file)


@dataclass(frozen=True)
class Owner:
    subject: str
    source: str                          # where `subject` came from (see the module docstring); FROM_FILE: nowhere
    visit: str = ""
    start_of_day_s: float | None = None  # seconds after midnight when the recording began, if a table says


def _time_of_day(text: str) -> float | None:
    parts = text.strip().split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if not 2 <= len(values) <= 3:
        return None
    h, m, s = (values + [0.0])[:3]
    return h * 3600 + m * 60 + s


def read_metadata(path) -> dict[str, dict]:
    """Id -> {subject, visit, start_of_day_s} from a metadata CSV with at least Id and Subject columns."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    if "Id" not in rows[0] or "Subject" not in rows[0]:
        raise DataError("a metadata table needs Id and Subject columns", file=str(path),
                        fix=f"its columns are {list(rows[0])}")
    start_col = next((c for c in rows[0] if c and c.lower().startswith("beginning of recording")), None)
    out = {}
    for row in rows:
        start = _time_of_day(row[start_col]) if start_col and row.get(start_col) else None
        out[row["Id"].strip()] = {"subject": row["Subject"].strip(), "visit": (row.get("Visit") or "").strip(),
                                  "start_of_day_s": start, "table": path.name}
    return out


def _participants(folder: Path, parts: tuple[str, ...]) -> str | None:
    """`HA-001` when `folder/participant_metadata.json` has the entry HA -> 001 for a file in folder/HA/001/."""
    try:
        table = json.loads((folder / PARTICIPANTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    matched = []
    for part in parts:
        if not isinstance(table, dict) or part not in table:
            break
        matched.append(part)
        table = table[part]
    return "-".join(matched) if matched else None


class Owners:
    """Finds the owner of each file; tables read once per folder. `roots`: the folders the user named (tables are
    looked for from a file's folder up to its root); `metadata`: a table given explicitly (it comes first)."""

    def __init__(self, roots=(), metadata=None):
        self.roots = [Path(r).resolve() for r in roots]
        self.explicit = read_metadata(metadata) if metadata else {}
        self.explicit_name = Path(metadata).name if metadata else ""
        self._tables: dict[Path, dict] = {}

    def _folders(self, path: Path):
        """The file's folder and its parents, up to (and with) the root it was found under."""
        for folder in path.parents:
            yield folder
            if folder in self.roots:
                return

    def _table(self, folder: Path) -> dict:
        if folder not in self._tables:
            merged = {}
            for name in METADATA_FILES:
                try:
                    for key, value in read_metadata(folder / name).items():
                        merged.setdefault(key, value)
                except (OSError, DataError):
                    continue    # absent, or a file by that name without Id/Subject: not ours to judge
            self._tables[folder] = merged
        return self._tables[folder]

    def of(self, path) -> Owner:
        path = Path(path).resolve()
        info = self.explicit.get(path.stem)
        table = self.explicit_name
        if info is None:
            for folder in self._folders(path):
                info = self._table(folder).get(path.stem)
                if info is not None:
                    table = info["table"]
                    break
        if info is not None:
            return Owner(info["subject"], f"metadata table {table}", info["visit"], info["start_of_day_s"])
        for reader, named in ((daphnet, "Daphnet's file name"), (stanford, "the Stanford study's file name")):
            subject = reader.subject_of(path)
            if subject != path.stem:
                return Owner(subject, named)
        for folder in path.parents[:PARTICIPANT_DEPTH]:     # the dataset's own table: above a root given too
            if (folder / PARTICIPANTS_FILE).is_file():
                subject = _participants(folder, path.parent.relative_to(folder).parts)
                if subject:
                    return Owner(subject, f"folders named in {PARTICIPANTS_FILE}")
        return Owner(path.stem, FROM_FILE)

    def mark(self, meta: dict, path) -> None:
        """A recording's meta["subject"] and meta["subject_from"]: what the data names, else the subject the recording
        carries itself (an npz written with one), else the file."""
        owner = self.of(path)
        if owner.source == FROM_FILE and meta.get("subject") and meta["subject"] != Path(path).stem:
            meta.setdefault("subject_from", "the recording's own meta")
            return
        meta["subject"], meta["subject_from"] = owner.subject, owner.source


def describe(sources: list[str]) -> str:
    """'6 subjects (3 from Daphnet's file name, 3 from folders named in participant_metadata.json)'-style tail:
    where the owners of these recordings came from, the file ones said plainly."""
    counts: dict[str, int] = {}
    for source in sources:
        counts[source] = counts.get(source, 0) + 1
    said = [f"{n} from {s}" if s != FROM_FILE else f"{n} named by nothing but the file (each file counted as its "
            "own person: give a metadata table with Id and Subject)" for s, n in counts.items()]
    return "; ".join(said)


def unique_names(files) -> dict[Path, str]:
    """A name for each file in tables: its stem (a Kaggle Id), or where two files share one (mobgap's three
    `TimeMeasure1_Test5_Trial1.csv`, a CSV and its Parquet copy) its path from the folder they share."""
    files = [Path(f) for f in files]
    stems: dict[str, list[Path]] = {}
    for f in files:
        stems.setdefault(f.stem, []).append(f)
    names = {f: f.stem for f in files}
    for clash in (v for v in stems.values() if len(v) > 1):
        common = Path(os.path.commonpath([str(f.resolve().parent) for f in clash]))
        for f in clash:
            names[f] = f.resolve().relative_to(common).with_suffix("").as_posix()
    return names
