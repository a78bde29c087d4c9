"""What the bundle's event detector will do: how its events are raised (`events.mode`, chosen from what the model
was trained on), and whether it is a working detector at all.

Degenerate detectors (the manifest's `checks`, "detector: ..."): export refuses, naming the fix, a class named like
"no event" that is not marked background (`check_class_names`, before any work) and a detector that calls FOG on
more than MOSTLY_FOG % of the FOG-free time of the fidelity data (`check_fog_free`: labelled not-FOG samples, and
every sample of recordings without labels, declared FOG-free); `--allow-degenerate` turns either into a warning.
A warning only: a detector that never fires (`check_fires`: probabilities below the on-threshold on the verification
windows and no event on the fidelity data). Random
initial weights (said loudly in the notes already) are not judged: their detector means nothing.

Event mode (`bundle_events`): `--event-mode` when given; else the checkpoint's training description
(calibration.checkpoint.trained_event_mode: "any" when any training recording labelled freezes untyped, "per_class"
when all carried the three types); else "per_class" (the classes as declared, what bundles did before the key),
said so in the manifest (`export.event_mode`).
"""
from __future__ import annotations

import re
import sys

import numpy as np

from calibration.checkpoint import trained_event_mode
from deploy.contract import EVENT_DEFAULTS
from deploy.contract.events import EventSettings
from deploy.event_classes import any_fog, event_columns
from toolkit.export.onnx import ExportError


def bundle_events(source, given: dict | None = None) -> tuple[EventSettings, dict]:
    """(the bundle's event settings, {"mode", "chosen_by"}): the source's own settings (a preset's), the event mode
    of its training, then the flags (`given`, manifest event keys; None values not given)."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    trained, why = trained_event_mode(source.info)
    if given.get("mode"):
        mode, chosen_by = given["mode"], "asked (--event-mode)" + (f"; training says {trained}: {why}"
                                                                    if trained and trained != given["mode"] else "")
    elif trained:
        mode, chosen_by = trained, why
    else:
        mode = EVENT_DEFAULTS["mode"]
        chosen_by = (f"{why}: {mode} (the classes as declared); pass --event-mode any for a model trained on "
                     "untyped freezes")
    settings = EventSettings.resolve(source.events, {"mode": mode}, given, classes=source.classes)
    return settings, {"mode": settings.mode, "chosen_by": chosen_by}


# ---------------------------------------------------------------------------------------------- degenerate detectors

# A class named like this is, by its name, "nothing happens": counted as FOG it keeps the detector always on.
BACKGROUND_LIKE = re.compile(r"^(no[\s_-]*(event|fog|freeze|freezing)s?|background|normal|none|null|nothing|other|"
                             r"rest|negative|idle)$", re.IGNORECASE)
MOSTLY_FOG = 50.0      # % of FOG-free time called FOG above which the detector is degenerate (always on)
OVERRIDE = "--allow-degenerate exports it anyway, with a warning in the manifest's checks"


class DegenerateDetector(ExportError):
    """The bundle's detector would not work (always on, or a 'no event' class counted as FOG); the message names
    the fix."""


def _check(name: str, passed: bool, detail: str, refuses: bool) -> dict:
    return {"name": f"detector: {name}", "passed": bool(passed), "detail": detail, "model": "events",
            "refuses": refuses}


def check_class_names(source) -> dict:
    """A class named like 'no event' that is not marked background (a refusal)."""
    suspects = [c for c in source.classes if BACKGROUND_LIKE.match(c) and c not in source.background]
    if not suspects:
        return _check("background classes", True, f"no class named like 'no event' counts as FOG "
                      f"(background: {list(source.background) or 'none'})", True)
    name = suspects[0]
    softmax = "" if source.activation == "softmax" else \
        " --activation softmax (a model with a 'no event' class gives one distribution over its classes)"
    return _check("background classes", False,
                  f"class {name!r} is named like 'no event' but is not marked background, so its probability counts "
                  f"as FOG and the detector is on whenever nothing happens; export with --background-class {name}"
                  f"{softmax}, or, if {name!r} is a freezing event, {OVERRIDE}", True)


def untrained(source) -> bool:
    """Random initial weights (the model's notes say so, loudly, already): a detector made of them is not judged."""
    return any("random initial weights" in note for note in source.notes)


NOT_JUDGED = "not judged: random initial weights (model.notes), whose detector means nothing"


def check_fires(reference: np.ndarray, source, settings: EventSettings, streaming=None) -> dict:
    """Whether the detector ever fires: the any-FOG probability of the verification windows reaching the
    on-threshold, or an event on the fidelity data (`streaming`, when measured). A warning: the data may hold no
    freeze the model knows."""
    if untrained(source):
        return _check("fires", True, NOT_JUDGED, False)
    probs = np.asarray(reference, np.float64).reshape(-1, np.shape(reference)[-1])
    columns = event_columns(source.classes, source.background)
    top = float(any_fog(probs, columns, source.any_fog).max()) if probs.size else float("nan")
    on = settings.any_fog([source.classes[i] for i in columns]).on
    f = (streaming.fidelity if streaming is not None else None) or {}
    events = max(f.get("events_streamed", 0), f.get("events_offline", 0))
    detail = (f"highest any-FOG probability on the verification windows {top:.3g} (on-threshold {on:g})"
              + (f"; {events} event(s) on the fidelity data" if f else "; fidelity not measured"))
    if top >= on or events:
        return _check("fires", True, detail, False)
    return _check("fires", False, detail + ": the detector never fires on them; check the activation "
                  "(--activation), the thresholds (--on/--off), and the input spec (--rate-hz, --units)", False)


def check_fog_free(streaming, source) -> dict:
    """How much of the FOG-free time of the fidelity data the bundle's detector calls FOG (a refusal above
    MOSTLY_FOG %; random initial weights are not judged)."""
    if untrained(source):
        return _check("FOG-free time called", True, NOT_JUDGED, True)
    f = (streaming.fidelity if streaming is not None else None) or {}
    streamed, offline = f.get("percent_fog_free_called_streamed"), f.get("percent_fog_free_called_offline")
    if streamed is None:
        why = streaming.skipped if streaming is not None and streaming.skipped else "no FOG-free samples measured"
        return _check("FOG-free time called", True, f"not measured ({why})", False)
    detail = (f"{streamed:.1f} % of the FOG-free time of the fidelity data ({streaming.data}) called FOG streamed, "
              f"{offline:.1f} % offline (limit {MOSTLY_FOG:g} %)")
    if streamed <= MOSTLY_FOG:
        return _check("FOG-free time called", True, detail, True)
    return _check("FOG-free time called", False, detail + ": the detector is always on; check the output "
                  "activation (--activation softmax for outputs that are one distribution), classes that are not "
                  "events (--background-class NAME), the thresholds (--on), and the input spec (--rate-hz, --units, "
                  f"--normalization); {OVERRIDE}", True)


def settle(check: dict, source, allow: bool) -> dict:
    """A refusing check that failed raises DegenerateDetector unless `allow`; otherwise a failed check is said
    loudly, kept in the model's notes (the daemon logs them) and returned as a warning for the manifest."""
    refuses = check.pop("refuses")
    if check["passed"]:
        return check
    if refuses and not allow:
        raise DegenerateDetector(f"degenerate detector ({check['name']}): {check['detail']}")
    check["warning"] = "accepted with --allow-degenerate" if refuses else "a warning, not a refusal"
    print(f"\n!!! export: WARNING: {check['name']}: {check['detail']}\n", file=sys.stderr, flush=True)
    source.notes.append(f"{check['name']}: {check['detail']}")
    return check
