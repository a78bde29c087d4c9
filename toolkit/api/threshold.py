"""An operating point chosen by `toolkit evaluate --at-fa-per-hour RATE --json-out EVAL.json`, for a bundle.

`chosen_events(EVAL.json)` returns the event settings to write (the settings evaluate scored, with the on/off pair the
sweep chose for the model: exactly what its point was scored with) and the record the manifest keeps of the choice
(`export.events_chosen`): the file and its sha256, the rate asked for, the point's figures, the model scored (preset,
weights sha256, bundle digest) and every recording that chose it (name, file, sha256). `toolkit export
--on-threshold-from EVAL.json` writes both; export refuses the choice for other weights than those evaluated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deploy.bundle import sha256_file
from deploy.errors import FogError

HOW = "toolkit evaluate RECORDINGS --bundle B --at-fa-per-hour RATE --json-out EVAL.json"


@dataclass(frozen=True)
class ChosenEvents:
    events: dict          # complete event settings (manifest keys) with the chosen on/off
    record: dict          # what the manifest keeps: export.events_chosen
    weights_sha256: str | None   # of the model evaluated (None: not known)


def _fail(path, problem: str, fix: str = f"write it with: {HOW}"):
    raise FogError(f"{path}: {problem} ({fix})")


def _read(path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        _fail(path, f"cannot be read ({exc.strerror or exc})")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        _fail(path, f"is not JSON ({exc})")
    if not isinstance(data, dict) or not {"results", "events", "operating_points"} <= set(data):
        _fail(path, "is not what `toolkit evaluate --json-out` writes (results, events, operating_points)")
    return data


def chosen_events(path) -> ChosenEvents:
    """The model's chosen operating point in an evaluate JSON, as settings and as a record (see the module doc)."""
    data = _read(path)
    if data.get("precision") is None or not data["results"]:
        _fail(path, "scored the freeze index only: there is no model threshold in it", "evaluate with --bundle")
    at = data.get("at_fa_per_hour")
    if not at:
        _fail(path, "holds operating points but no chosen one", f"evaluate with --at-fa-per-hour RATE: {HOW}")
    name = data["results"][0]["name"]
    point = (at.get("chosen") or {}).get(name)
    if point is None:
        points = (data["operating_points"].get(name) or {}).get("points") or [{}]
        fewest = min(points, key=lambda p: (p.get("false_alarms_per_hour") or float("inf")))
        _fail(path, f"no threshold of the sweep kept {name} to {at['target']:g} false alarms per hour (fewest: "
                    f"{fewest.get('false_alarms_per_hour')} at on {fewest.get('on')})",
              "evaluate with a higher --at-fa-per-hour, or finer --thresholds")
    events = {**data["events"], "on": point["on"], "off": point["off"]}
    model = data.get("model") or {}
    record = {"from": str(Path(path).resolve()), "sha256": sha256_file(path), "fa_per_hour_asked": at["target"],
              "scored": {"scorer": name, "precision": data.get("precision"), "runtime": data.get("runtime"),
                         **model},
              "point": point, "events_scored": data["events"], "hours": data.get("hours"),
              "recordings": data.get("recordings_used") or []}
    return ChosenEvents(events=events, record=record, weights_sha256=model.get("weights_sha256"))
