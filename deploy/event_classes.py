"""Which of a model's classes are events, and how "any FOG" is formed from them.

A user's model may have classes that are not freezing events: the 4th-place Kaggle model's 4th softmax output is
"no event". The manifest's `output` section says so (deploy.contract.model.OutputSection reads it):
- `background`: the classes that never raise an event (the detector, evaluate and the sinks' events skip them;
  probability messages still carry every class);
- `any_fog`: how the one "any FOG" probability is formed from the event classes: "sum" (a softmax model: the
  event classes share one distribution, so their sum is P(some freeze)) or "max" (sigmoid outputs: independent).
Older bundles lack both keys: no background class, "max".
"""
from __future__ import annotations

import numpy as np

from deploy.errors import FogError

ANY_FOG_RULES = ("max", "sum")


def default_rule(activation: str, background) -> str:
    """"sum" for a softmax model with a background class (its event classes share the probability mass), else max."""
    return "sum" if activation == "softmax" and background else "max"


def check_background(classes, background) -> list[str]:
    """The background classes, checked against `classes`; at least one event class must remain."""
    background = [c for c in (background or []) if c]
    unknown = [c for c in background if c not in classes]
    if unknown:
        raise FogError(f"background class {unknown} is not one of the model's classes {list(classes)}; "
                       "name a class from --classes")
    if len(set(background)) >= len(classes):
        raise FogError(f"every class ({list(classes)}) is marked background: nothing could raise an event; "
                       "leave at least one event class")
    return background


def event_columns(classes, background) -> list[int]:
    """Indexes of the event classes (every class that is not background), in order."""
    skip = set(background or ())
    return [i for i, c in enumerate(classes) if c not in skip]


def any_fog(probs: np.ndarray, columns=None, rule: str = "max") -> np.ndarray:
    """(n,) any-FOG probability from (n, C) class probabilities: the event columns, summed or maxed (sum capped
    at 1 against rounding). A 1-D input is already an any-FOG score and is returned as is."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        return probs
    events = probs if columns is None else probs[:, list(columns)]
    return np.minimum(events.sum(axis=1), 1.0) if rule == "sum" else events.max(axis=1)
