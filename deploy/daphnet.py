"""The Daphnet Freezing of Gait text format (UCI #245; Bachlin et al. 2010): real freezes of people with PD.

One sample per line, 11 integers separated by spaces, no header: time in ms, then ankle, thigh and trunk
acceleration (forward, vertical, lateral each, in mg), then the annotation (0 = not part of the experiment,
1 = experiment without freeze, 2 = freeze). 64 Hz. The trunk sensor sits on a belt at the lower back, where the
Kaggle data's sensor sits, so `position="trunk"` is the default.

Mapped into the project's convention (deploy.layouts): AccV = -vertical (Daphnet's vertical reads about +1000 mg
at rest where Kaggle's AccV reads about -1 g), AccML = lateral, AccAP = forward, mg -> g. Annotation 0 is masked
out (as Kaggle's defog Valid/Task). The label says "freeze" without Kaggle's three types: it is written into all
three class columns and the recording is marked `meta["label_kind"] = "any"`, so scoring uses any-FOG figures and
training uses the any-FOG loss (calibration.train) for it. The subject id comes from the file name (S02R01 -> S02).
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from deploy.cells import locate_bad_cell
from deploy.errors import DataError

RATE_HZ = 64.0
N_COLUMNS = 11
POSITIONS = {"ankle": 1, "thigh": 4, "trunk": 7}   # first column (forward) of each sensor, 0-based
LAYOUT_POSITIONS = {"daphnet": "trunk", "daphnet-trunk": "trunk", "daphnet-ankle": "ankle",
                    "daphnet-thigh": "thigh"}
COLUMN_NAMES = ["time_ms"] + [f"{s}_{a}" for s in ("ankle", "thigh", "trunk") for a in ("fwd", "vert", "lat")] \
    + ["annotation"]
_NAME = re.compile(r"^(S\d+)(R\d+)", re.IGNORECASE)


def looks_like_daphnet(first_line: str) -> bool:
    """True when a text file's first line is 11 whitespace-separated integers."""
    cells = first_line.split()
    return len(cells) == N_COLUMNS and all(re.fullmatch(r"-?\d+", c) for c in cells)


def _fail(problem, path, row=None, column=None, fix=None):
    raise DataError(problem, file=str(path), row=row, column=column, fix=fix)


def _parse(text: str, path) -> np.ndarray:
    try:
        table = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
    except ValueError:
        _locate_bad_line(text, path)
        raise  # not reached
    if table.size == 0:
        _fail("the file has no samples", path, fix="check that the recording was copied fully")
    if table.shape[1] != N_COLUMNS:
        _fail(f"rows have {table.shape[1]} values; a Daphnet file has {N_COLUMNS}", path,
              fix="pass the Daphnet text files unchanged (time, 9 acceleration columns, annotation)")
    return table


def _locate_bad_line(text: str, path):
    locate_bad_cell(text, COLUMN_NAMES, path, first_row=1, separator=None, what="values",
                    count_fix="every line needs time, 9 acceleration values and the annotation",
                    value_fix="every value in a Daphnet file is an integer")


def subject_of(path) -> str:
    """S02R01.txt -> S02 (the recording's stem when the name does not follow Daphnet's pattern)."""
    match = _NAME.match(Path(path).stem)
    return match.group(1).upper() if match else Path(path).stem


def read_daphnet(path, text: str, position: str = "trunk", rate_hz: float | None = None) -> dict:
    """The fields of a `deploy.recording.Recording` from the text of a Daphnet file (see the module docstring
    for the mapping)."""
    if position not in POSITIONS:
        _fail(f"unknown Daphnet sensor position {position!r}", path, fix=f"use one of {sorted(POSITIONS)}")
    table = _parse(text, path)
    bad = ~np.isfinite(table)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        _fail("value is not a finite number", path, row=int(r) + 1, column=COLUMN_NAMES[c])
    time = table[:, 0]
    steps = np.diff(time)
    if (steps <= 0).any():
        r = int(np.flatnonzero(steps <= 0)[0]) + 1
        _fail(f"time {time[r]:g} ms after {time[r - 1]:g} ms does not increase", path, row=r + 1,
              column="time_ms", fix="time must strictly increase; pass the Daphnet file unchanged")
    annotation = table[:, 10]
    unknown = ~np.isin(annotation, (0, 1, 2))
    if unknown.any():
        r = int(np.flatnonzero(unknown)[0])
        _fail(f"annotation {annotation[r]:g} is not 0, 1 or 2", path, row=r + 1, column="annotation")
    first = POSITIONS[position]
    forward, vertical, lateral = (table[:, first + k] / 1000.0 for k in range(3))
    acc = np.stack([-vertical, lateral, forward], axis=1)
    freeze = (annotation == 2).astype(np.float64)
    meta = {"source": str(path), "layout": "daphnet", "id": Path(path).stem, "subject": subject_of(path),
            "position": position, "time_unit": "ms", "label_kind": "any", "lab": "daphnet"}
    return {"acc": acc, "rate_hz": rate_hz or RATE_HZ, "units": "g", "time": time,
            "labels": np.repeat(freeze[:, None], 3, axis=1), "mask": annotation != 0, "meta": meta}
