"""The manifest's `events` section: when windows run, how long a sample waits for later windows, and how episodes are
called. Every reader of event settings goes through `EventSettings`:

- `EventSettings.resolve(*layers, classes=)` is the one layering: the contract's defaults (deploy.contract
  .EVENT_DEFAULTS), then each layer in turn (a manifest's `events`, a preset's, a config file's, flags), a layer's
  None leaving what is below it (a flag not given); then the one validation (`check_value`, thresholds naming only
  `classes`, off <= on per class). Export, the daemon, evaluate, score and the studies call it alike.
- `hop_samples(rate)` and `lookahead_samples(rate)` are the one seconds -> samples rule of the hop and look-ahead:
  rounded to the nearest sample, a hop of at least 1, a look-ahead of at least 0 or None for "full" (whole windows,
  deploy.offline's convention).
- `mode` says how events are raised ("any": one any-FOG event per freeze; "per_class": one stream per event class;
  deploy.contract.EVENT_MODES); `any_fog()` is the one rule for the settings of the any-FOG detector (the least
  strict per-class thresholds). deploy.events.Detection applies both wherever events are found.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from deploy.contract import EVENT_DEFAULTS, EVENT_HELP, EVENT_KEYS, EVENT_MODES
from deploy.contract.checks import known_keys, number
from deploy.contract.section import Section, key
from deploy.errors import ConfigError, did_you_mean

FULL = "full"   # look-ahead of whole windows (every window that covers a sample contributes to it)
THRESHOLDS = ("on", "off")
DETECTOR_KEYS = ("on", "off", "min_duration_s", "smoothing_s", "refractory_s")  # what EventDetector takes


def check_lookahead(value, name):
    """Seconds in [0, 600], or "full"."""
    return value if value == FULL else number(0, 600)(value, name)


# The range of each timing key: the daemon's, so export never writes a bundle the device refuses.
TIMINGS = {"hop_s": number(0, 60, above=True), "lookahead_s": check_lookahead, "smoothing_s": number(0, 60),
           "min_duration_s": number(0, 3600), "refractory_s": number(0, 3600)}


def check_mode(value, name):
    """One of deploy.contract.EVENT_MODES."""
    if value not in EVENT_MODES:
        raise ConfigError(f"{name} = {value!r}: must be one of {', '.join(repr(m) for m in EVENT_MODES)}")
    return value


def _sequence(value) -> bool:
    return hasattr(value, "__len__") and hasattr(value, "__iter__") and not isinstance(value, (str, dict))


def check_thresholds(value, name, classes=None, exact: bool = True):
    """A probability; a table class -> probability (when `classes` is known, naming every one of them and, `exact`,
    no other class: the manifest's form); or a sequence of one probability per class, in order."""
    if _sequence(value):
        if classes is not None and len(value) != len(classes):
            raise ConfigError(f"{name} has {len(value)} thresholds for {len(classes)} classes ({', '.join(classes)})")
        try:
            numbers = [float(p) for p in value]
        except (TypeError, ValueError):
            raise ConfigError(f"{name} = {value!r}: expected probabilities") from None
        for i, p in enumerate(numbers):
            number(0, 1)(p, f"{name}[{i}]")
        return value
    if not isinstance(value, dict):
        return number(0, 1)(value, name)
    for cls, p in value.items():
        if exact and classes is not None and cls not in classes:
            raise ConfigError(f"{name}: unknown event class {cls!r} ({did_you_mean(cls, classes)})")
        number(0, 1)(p, f"{name}.{cls}")
    if classes is not None and not set(classes) <= set(value):
        raise ConfigError(f"{name} lacks thresholds for {sorted(set(classes) - set(value))}; give every class "
                          f"({', '.join(classes)}) or one number for all")
    return value


def check_value(key_name: str, value, name: str, classes=None):
    """One event setting checked (the one per-key rule); returns it."""
    if key_name in THRESHOLDS:
        return check_thresholds(value, name, classes)
    if key_name == "mode":
        return check_mode(value, name)
    if key_name not in TIMINGS:
        raise ConfigError(f"{name}: unknown event setting {key_name!r} ({did_you_mean(key_name, EVENT_KEYS)})")
    return TIMINGS[key_name](value, name)


def check_layer(layer, where: str, keys=EVENT_KEYS, classes=None) -> dict:
    """A partial layer of event settings (a config's [events] table, flags): known keys, values in range; None
    values are "not given"."""
    known_keys(layer, keys, where)
    for name, value in layer.items():
        if value is not None:
            check_value(name, value, f"{where}.{name}", classes)
    return layer


def per_class(value, classes) -> list[float]:
    """A threshold (one number, a table or a sequence) as one float per class, in order."""
    if isinstance(value, dict):
        return [float(value[c]) for c in classes]
    if _sequence(value):
        return [float(p) for p in value]
    return [float(value)] * len(classes)


def thresholds_per_class(on, off, classes, where: str = "events", exact: bool = True) -> tuple[list, list]:
    """(on, off) per class, checked: each in [0, 1], tables naming every class (and, `exact`, no other), off <= on
    class by class. A detector of some of a model's classes (not its background ones) passes exact=False."""
    check_thresholds(on, f"{where}.on", list(classes), exact)
    check_thresholds(off, f"{where}.off", list(classes), exact)
    ons, offs = per_class(on, classes), per_class(off, classes)
    if any(lo > hi for lo, hi in zip(offs, ons)):
        raise ConfigError(f"{where}: each off threshold must be <= its on threshold (on={on}, off={off})")
    return ons, offs


@dataclass(frozen=True, kw_only=True)
class EventSettings(Section):
    """The manifest's `events`: the settings every reader resolves the same way (see the module docstring)."""
    KEY: ClassVar[str] = "events"
    hop_s: float = key(EVENT_DEFAULTS["hop_s"], EVENT_HELP["hop_s"])
    lookahead_s: float | str = key(EVENT_DEFAULTS["lookahead_s"], EVENT_HELP["lookahead_s"])
    smoothing_s: float = key(EVENT_DEFAULTS["smoothing_s"], EVENT_HELP["smoothing_s"])
    min_duration_s: float = key(EVENT_DEFAULTS["min_duration_s"], EVENT_HELP["min_duration_s"])
    refractory_s: float = key(EVENT_DEFAULTS["refractory_s"], EVENT_HELP["refractory_s"])
    on: float | dict = key(EVENT_DEFAULTS["on"], EVENT_HELP["on"] + ": {class: p} (export writes a table)")
    off: float | dict = key(EVENT_DEFAULTS["off"], EVENT_HELP["off"] + ": {class: p} (export writes a table)")
    mode: str = key(EVENT_DEFAULTS["mode"], EVENT_HELP["mode"] + "; absent: per_class")

    @classmethod
    def resolve(cls, *layers, classes=None, where: str = "events") -> "EventSettings":
        """The defaults, then each layer (a dict of event keys, an EventSettings, or None) over them, checked; with
        `classes`, per-class thresholds must name exactly those classes."""
        merged = {}
        for layer in layers:
            items = layer.to_dict() if isinstance(layer, EventSettings) else check_layer(dict(layer or {}), where)
            merged.update({k: v for k, v in items.items() if v is not None})
        for name, value in merged.items():
            check_value(name, value, f"{where}.{name}", classes)
        settings = cls(**merged)
        if classes is not None:
            thresholds_per_class(settings.on, settings.off, list(classes), where)
        elif all(not isinstance(v, dict) and not _sequence(v) for v in (settings.on, settings.off)) \
                and settings.off > settings.on:
            raise ConfigError(f"{where}: each off threshold must be <= its on threshold (on={settings.on}, "
                              f"off={settings.off})")
        return settings

    @classmethod
    def from_dict(cls, data, classes=None) -> "EventSettings":
        """A manifest's `events` (partial ones completed with the defaults). A look-ahead written as null is read
        as "full", as the daemon always read it."""
        data = dict(known_keys(data, EVENT_KEYS, cls.KEY))
        if "lookahead_s" in data and data["lookahead_s"] is None:
            data["lookahead_s"] = FULL
        return cls.resolve(data, classes=classes, where=cls.KEY)

    # ------------------------------------------------------------------ the one seconds -> samples rule

    def hop_samples(self, rate_hz: float) -> int:
        """Model-rate samples between windows: hop_s at `rate_hz`, rounded, at least 1."""
        return max(1, int(round(float(self.hop_s) * float(rate_hz))))

    def lookahead_samples(self, rate_hz: float) -> int | None:
        """Model-rate samples a sample may wait for later windows: rounded, at least 0; None for "full"."""
        if self.lookahead_s == FULL:
            return None
        return max(0, int(round(float(self.lookahead_s) * float(rate_hz))))

    # ------------------------------------------------------------------ views

    @property
    def full_lookahead(self) -> bool:
        return self.lookahead_s == FULL

    @property
    def any_event(self) -> bool:
        return self.mode == "any"

    def any_fog(self, classes=None) -> "EventSettings":
        """The settings of the one any-FOG detector: each threshold the least strict of its per-class values (the
        any-FOG probability is at least every event class's), of the event `classes` when some are given (a
        background class's threshold is no event's), off never above on."""
        def least(value) -> float:
            if isinstance(value, dict):
                return min(v for c, v in value.items() if not classes or c in classes)
            return min(value) if _sequence(value) else value
        on = least(self.on)
        return replace(self, on=on, off=min(least(self.off), on))

    def detector_kwargs(self) -> dict:
        """deploy.events.EventDetector's keyword arguments."""
        return {k: getattr(self, k) for k in DETECTOR_KEYS}

    def per_class(self, classes) -> "EventSettings":
        """The same settings with on/off as {class: threshold} tables (how a manifest writes them)."""
        def table(value):
            if isinstance(value, dict):
                return dict(value)
            return dict(zip(classes, per_class(value, classes))) if _sequence(value) else {c: value for c in classes}
        return replace(self, on=table(self.on), off=table(self.off))
