"""Wearers: what the daemon keeps per person, and the gateway's table of who is connected.

`WearerStream` is one wearer's stream (its counters, the rate its timestamps say, its `deploy.stream.Pipeline`) and
`process(chunk)` is what happens to each chunk of it: the single-wearer daemon (deploy.daemon) and the gateway
(deploy.gateway) run this same code, so a wearer's events through the gateway are those of a daemon of their own.

`WearerTable` (the gateway's): a wearer appears with its first sample (up to `max_wearers`; the samples of more are
counted, never silently lost: `refused_samples`), leaves after `timeout_s` of silence (its open hop is run, its
episodes closed, its counters kept in the totals), and a restart of its sensor (time going back) resets its own
segment only (deploy.intake's clock-reset rule, in its own intake). Metrics labels are bounded: the first
`label_cap` wearers seen keep their own label for the life of the process, every later one counts under "other".
"""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from deploy.clock import TIME_UNITS, RateMismatch, RateWatch
from deploy.errors import FogError, printable
from deploy.plausibility import ImplausibleSignal, SignalWatch
from deploy.sources import REJECT_FIX
from deploy.stream import StreamSettings

log = logging.getLogger("deploy.wearers")

OTHER = "other"   # the metrics label of every wearer beyond the label cap


def stream_settings(bundle, config: dict, source, events) -> StreamSettings:
    """How a wearer's stream is read, cut and judged: the bundle's manifest, the config's [stream], the source's
    units, rate and liveness, the checked event settings (the daemon's one wearer and each of the gateway's)."""
    st, rate = config["stream"], bundle.input.spec.rate_hz
    return StreamSettings(source_units=source.units, source_rate_hz=source.rate_hz, hop_samples=events.hop_samples(rate),
                          lookahead_samples=events.lookahead_samples(rate), events=events, live=source.live,
                          max_gap_s=st["max_gap_s"], max_behind_s=st["max_behind_s"],
                          event_columns=tuple(bundle.output.event_columns), any_fog=bundle.output.any_fog)


def watches(bundle, config: dict, source, counters):
    """(rate watch or None for a replay, signal watch) of a wearer's stream: what its timestamps and its gravity
    say (deploy.clock, deploy.plausibility)."""
    rate = source.rate_hz or bundle.input.spec.rate_hz
    signal = SignalWatch(source.units, rate, counters, policy=config["source"]["signal_check"],   # the model's input:
                         orientation=not bundle.input.spec.gravity_align)   # orientation-invariant or not
    rate_watch = None if source.name == "replay" else RateWatch(
        rate, counters, policy=config["source"]["rate_check"],
        given=config["source"].get("rate_hz") is not None or source.name == "lsl")
    return rate_watch, signal


def time_scale(config: dict) -> float:
    """Seconds per unit of the source's timestamps (source.time_unit, line sources)."""
    return TIME_UNITS[config["source"]["time_unit"]] if "time_unit" in config["source"] else 1.0


class WearerStream:
    """One wearer's stream: `process(chunk)` counts it, logs what could not be parsed, brings its timestamps to
    seconds (`time_scale`), checks its rate and the plausibility of its signal, and pushes it through the pipeline."""

    def __init__(self, pipeline, counters, rate_watch=None, name: str | None = None, signal_watch=None,
                 time_scale: float = 1.0):
        self.pipeline, self.counters, self.rate_watch, self.name = pipeline, counters, rate_watch, name
        self.signal_watch, self.time_scale = signal_watch, float(time_scale)
        self.rejecting = 0          # chunks that held lines the source could not parse

    def _say(self, text: str) -> str:
        return f"wearer {self.name}: {text}" if self.name else text

    def process(self, chunk) -> str | None:
        """Returns why the stream is refused (its timestamps disagree with its rate, or its signal is implausible,
        and the policy is to refuse: the chunk's samples are counted as dropped, as every later chunk's are), else
        None. A chunk the pipeline fails on is counted as dropped (`pipeline_error`) and never stops the stream."""
        counters, pipeline = self.counters, self.pipeline
        counters.receive(chunk.received, chunk.rejected)
        if chunk.rejected:
            self._note_rejected(chunk)
        if self.time_scale != 1.0:   # source.time_unit: timestamps in ms or us, to seconds
            np.multiply(chunk.t, self.time_scale, out=chunk.t)
        settled = counters.settled()
        try:
            if self.rate_watch is not None:
                self.rate_watch.check(chunk.t)
            if self.signal_watch is not None:
                self.signal_watch.check(chunk.acc)
            pipeline.push(chunk)
        except (RateMismatch, ImplausibleSignal) as exc:  # refused: nothing of it enters the pipeline, all counted
            counters.drop(exc.drop_reason, len(chunk.t))
            return str(exc)
        except Exception as exc:  # never stops the patient's detector; what the chunk lost is counted
            if isinstance(exc, FogError):
                log.error("%s", self._say(f"chunk rejected: {exc}"))
            else:  # a bug: logged with its traceback
                log.exception("%s", self._say("pipeline error; the window restarts"))
                pipeline.end_segment()
            counters.drop("pipeline_error", max(0, settled + len(chunk.t) - counters.settled()))
        return None

    def _note_rejected(self, chunk) -> None:
        """Lines the source could not parse are counted (dropped by reason); the 1st, 10th, 100th and every 1000th
        chunk with such lines is logged with the line and the fix, so a sender with the wrong format hears why."""
        self.rejecting += 1
        if self.rejecting in (1, 10, 100) or self.rejecting % 1000 == 0:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(chunk.rejected.items()))
            fixes = "; ".join(REJECT_FIX.get(reason, reason) for reason in sorted(chunk.rejected))
            rejected = sum(self.counters.dropped[r] for r in REJECT_FIX)
            log.warning("%s", self._say(f"lines rejected ({reasons}; {rejected} of {self.counters.received} received "
                                        f"so far), e.g. {printable(getattr(chunk, 'example', None) or '')!r}: "
                                        f"{fixes}"))


class Wearer:
    """A connected wearer of the gateway: its stream, when it was seen, and whether its stream was refused."""

    def __init__(self, device: str, stream: WearerStream, label: str, now: float):
        self.device, self.stream, self.label = device, stream, label
        self.first_seen = self.last_seen = now
        self.refused: str | None = None

    @property
    def counters(self):
        return self.stream.counters

    def status_line(self, now: float) -> str:
        state = f" REFUSED ({self.refused})" if self.refused else ""
        return (f"wearer {self.device}: {self.counters.status_line()}, last sample {now - self.last_seen:.1f} s "
                f"ago{state}")


class WearerTable:
    """Who is connected: `get(device)` finds or opens a wearer (None beyond `max_wearers`), `expire(now)` closes
    those silent for `timeout_s`. `make_stream(device, counters)` builds a wearer's WearerStream."""

    def __init__(self, make_stream, make_counters, max_wearers: int = 1000, timeout_s: float = 30.0,
                 label_cap: int = 50, on_join=None, on_leave=None):
        self.make_stream, self.make_counters = make_stream, make_counters
        self.max_wearers, self.timeout_s, self.label_cap = int(max_wearers), float(timeout_s), int(label_cap)
        self.on_join, self.on_leave = on_join, on_leave
        self.active: dict[str, Wearer] = {}
        self.labels: dict[str, str] = {}        # device -> its metrics label, for the life of the process
        self.departed: dict[str, dict] = {}     # label -> the summed counts of wearers that left (kept in totals)
        self.refused_samples: Counter[str] = Counter()   # device -> samples refused because the table was full
        self.left_counts: dict[str, dict] = {}  # device -> its counters when it last left (the latest max_wearers)
        self.joined = self.left = 0

    def label_of(self, device: str) -> str:
        if device not in self.labels:
            own = sum(1 for label in self.labels.values() if label != OTHER) < self.label_cap
            self.labels[device] = device if own else OTHER
        return self.labels[device]

    def get(self, device: str, now: float) -> Wearer | None:
        wearer = self.active.get(device)
        if wearer is not None:
            return wearer
        if len(self.active) >= self.max_wearers:
            return None
        counters = self.make_counters()
        wearer = Wearer(device, self.make_stream(device, counters), self.label_of(device), now)
        self.active[device] = wearer
        self.joined += 1
        log.info("wearer %s joined (%d connected)", device, len(self.active))
        if self.on_join is not None:
            self.on_join(wearer)
        return wearer

    def refuse(self, device: str, samples: int) -> None:
        """Samples of a wearer the full table could not take: counted (and said once per device)."""
        if device not in self.refused_samples:
            log.warning("wearer %s refused: %d wearers connected (gateway.max_wearers); its samples are counted "
                        "as refused", device, len(self.active))
        self.refused_samples[device] += samples

    def leave(self, wearer: Wearer, why: str) -> None:
        """Close a wearer: its open hop run, its episodes closed (one still going is cut, its event says `why`);
        its counters stay in the totals."""
        wearer.stream.pipeline.end_segment(why)
        del self.active[wearer.device]
        snapshot = wearer.counters.snapshot()
        fold(self.departed.setdefault(wearer.label, {}), snapshot)
        self.left_counts.pop(wearer.device, None)
        self.left_counts[wearer.device] = snapshot
        while len(self.left_counts) > self.max_wearers:
            self.left_counts.pop(next(iter(self.left_counts)))
        self.left += 1
        log.info("wearer %s left (%s): %s", wearer.device, why, wearer.counters.status_line())
        if self.on_leave is not None:
            self.on_leave(wearer, why)

    def expire(self, now: float) -> list[Wearer]:
        """Wearers silent for longer than the timeout leave; returns them."""
        gone = [w for w in self.active.values() if now - w.last_seen > self.timeout_s]
        for wearer in gone:
            self.leave(wearer, f"the wearer's sensor was silent for more than {self.timeout_s:g} s "
                               "(gateway.wearer_timeout_s)")
        return gone

    def close(self, why: str = "the daemon was stopped") -> None:
        for wearer in list(self.active.values()):
            self.leave(wearer, why)

    def totals(self) -> tuple[dict, dict]:
        """(the summed counts of every wearer seen, connected or departed; the same per metrics label)."""
        per_label = {label: fold({}, summed) for label, summed in self.departed.items()}
        for wearer in list(self.active.values()):
            fold(per_label.setdefault(wearer.label, {}), wearer.counters.snapshot())
        total: dict = {}
        for summed in per_label.values():
            fold(total, summed)
        return total, per_label


# the counts that add up over wearers (deploy.counters.Counters.snapshot's keys)
SUMMED = ("received", "accepted", "dropped", "interpolated", "gaps_filled", "resets", "clock_resets", "unscored",
          "rate_mismatches", "hops_run", "hops_skipped_behind", "events", "silences", "engine_s")


def fold(total: dict, snapshot: dict) -> dict:
    """Add a counters snapshot's summable counts into `total` (in place; returns it)."""
    for key in SUMMED:
        value = snapshot.get(key, 0)
        if isinstance(value, dict):
            bucket = total.setdefault(key, {})
            for reason, n in value.items():
                bucket[reason] = bucket.get(reason, 0) + n
        else:
            total[key] = total.get(key, 0) + value
    return total

