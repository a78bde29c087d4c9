"""File layouts a recording can come in, as data.

A layout names the columns, the sampling rate and the units of one kind of CSV file. The Kaggle FOG layouts
(`tdcsfog`, `defog`, `test`) are fixed by the competition; a *mapping* describes anyone else's sensor file: which
column is time (and in what unit), which column (with which sign) is each of AccV, AccML, AccAP, the rate and the
units. `mobgap` is the built-in example (Mobilise-D lower-back IMU files):

    MAPPINGS["mobgap"] = ColumnMapping(time="samples", time_unit="samples", rate_hz=100, units="g",
                                       axes={"AccV": "-acc_x", "AccML": "acc_y", "AccAP": "acc_z"})

mobgap's `acc_x` points up (about +1 g at rest) while Kaggle's AccV reads about -1 g at rest, so the mapping negates
it: every recording in this project then carries gravity as AccV ~ -1 g. A user maps their own sensor the same way,
e.g. `read_recording(path, mapping={"time": "t_ms", "time_unit": "ms", "rate_hz": 50, "units": "m/s^2",
"axes": {"AccV": "-az", "AccML": "ax", "AccAP": "ay"}})`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

AXES = ("AccV", "AccML", "AccAP")
CLASSES = ("StartHesitation", "Turn", "Walking")
UNITS = ("g", "m/s^2")


@dataclass(frozen=True)
class Layout:
    """A fixed CSV layout: its columns in file order, and the rate and units its files are in (None: inferred)."""
    name: str
    columns: tuple[str, ...]
    rate_hz: float | None
    units: str | None
    labelled: bool = False
    masked: bool = False


LAYOUTS = {
    "tdcsfog": Layout("tdcsfog", ("Time",) + AXES + CLASSES, 128.0, "m/s^2", labelled=True),
    "defog": Layout("defog", ("Time",) + AXES + CLASSES + ("Valid", "Task"), 100.0, "g", labelled=True, masked=True),
    # Kaggle test files: tdcsfog ones are 128 Hz m/s^2, defog ones 100 Hz g; told apart by gravity's magnitude.
    "test": Layout("test", ("Time",) + AXES, None, None),
}
BINARY_LAYOUTS = ("npz",)
# The help of every command line's --layout: always a file layout (a model's tensor layout is export --input-layout).
FILE_LAYOUT_HELP = ("file layout of the recordings (tdcsfog, defog, test, npz; daphnet, daphnet-ankle, daphnet-thigh; "
                    "stanford = the lumbar IMU of a Stanford workbook or trial, stanford-<imu> another: chest, "
                    "ankle_l, ankle_r, foot_l, foot_r, head, thigh_l, thigh_r, wrist_l, wrist_r; a mapping name "
                    "such as mobgap; when reading: detected if not given)")


@dataclass(frozen=True)
class ColumnMapping:
    """How to read a foreign CSV: `axes` maps each of AXES to a column name, prefixed by '-' to negate it."""
    axes: dict
    rate_hz: float
    units: str
    time: str | None = None
    time_unit: str = "samples"          # "samples" (an index), "s" or "ms"
    labels: dict = field(default_factory=dict)   # optional: class name -> column

    @classmethod
    def from_dict(cls, d: dict) -> "ColumnMapping":
        known = {"axes", "rate_hz", "units", "time", "time_unit", "labels"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown mapping keys {sorted(unknown)}; known keys are {sorted(known)}")
        return cls(axes=dict(d["axes"]), rate_hz=float(d["rate_hz"]), units=d["units"], time=d.get("time"),
                   time_unit=d.get("time_unit", "samples"), labels=dict(d.get("labels", {})))

    def axis_source(self, axis: str) -> tuple[str, float]:
        """(column, sign) feeding `axis`."""
        spec = self.axes[axis].strip()
        return (spec[1:].strip(), -1.0) if spec.startswith("-") else (spec.lstrip("+").strip(), 1.0)


MAPPINGS = {
    "mobgap": ColumnMapping(time="samples", time_unit="samples", rate_hz=100.0, units="g",
                            axes={"AccV": "-acc_x", "AccML": "acc_y", "AccAP": "acc_z"}),
}


def detect_layout(header: list[str]) -> str | None:
    """The layout or mapping name whose columns this header has, or None."""
    cols = set(header)
    for name in ("defog", "tdcsfog", "test"):
        if set(LAYOUTS[name].columns) <= cols:
            return name
    for name, mapping in MAPPINGS.items():
        needed = {mapping.axis_source(a)[0] for a in AXES} | ({mapping.time} if mapping.time else set())
        if needed <= cols:
            return name
    return None
