"""What the bundle's event detector will do: how its events are raised (`events.mode`, chosen from what the model
was trained on), and whether it is a working detector at all.

Event mode (`bundle_events`): `--event-mode` when given; else the checkpoint's training description
(calibration.checkpoint.trained_event_mode: "any" when any training recording labelled freezes untyped, "per_class"
when all carried the three types); else "per_class" (the classes as declared, what bundles did before the key),
said so in the manifest (`export.event_mode`).
"""
from __future__ import annotations

from calibration.checkpoint import trained_event_mode
from deploy.contract import EVENT_DEFAULTS
from deploy.contract.events import EventSettings


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
