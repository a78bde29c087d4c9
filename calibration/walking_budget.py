"""The walking budget of the threshold step (models/weights/CHOICE_RULE_ROUND2.md, amendment): an on-threshold is a
candidate only if the candidate network raises at most MAX_PER_HOUR false alarms per hour on real FOG-free walking
(`../shared/data/mobgap-walking`). Every fold network of the network's runs scores the walking recordings (they hold
nobody of the folds), blended as the candidate says, through the same event detector; their alarms and hours are
pooled over the fold networks, so the figure is that of a network trained without one person, as on the folds."""
from __future__ import annotations

import sys

from deploy.contract.events import EventSettings
from deploy.scoring import score

MAX_PER_HOUR = 10.0


class WalkingBudget:
    """`fold_networks(network)`: [(window terms, spec)] of each fold network on `walking`; `replayed(calls, spec,
    recordings, blend, power)`: their blended probabilities (calibration.blend_choice passes both)."""

    def __init__(self, walking: list, fold_networks, replayed, max_per_hour: float = MAX_PER_HOUR):
        self.walking, self.fold_networks, self.replayed = walking, fold_networks, replayed
        self.max_per_hour = max_per_hour
        self._terms, self._rates = {}, {}
        for r in self.walking:
            r.labels = None              # walking: every event is a false alarm

    def per_hour(self, network: str, blend: float, power: float, thresholds, hysteresis: float,
                 timing: dict | None = None) -> dict:
        """{on: false alarms per hour on the walking recordings, pooled over the network's fold networks};
        `timing`: event settings over the defaults (smoothing_s, min_duration_s: calibration.event_choice)."""
        key = (network, blend, power, tuple(sorted((timing or {}).items())))
        if key not in self._rates:
            if network not in self._terms:
                print(f"walking budget: {network}'s fold networks on {len(self.walking)} walking recordings",
                      file=sys.stderr, flush=True)
                self._terms[network] = self.fold_networks(network)
            alarms, hours = dict.fromkeys(thresholds, 0), 0.0
            for calls, spec in self._terms[network]:
                probs = self.replayed(calls, spec, self.walking, blend, power)
                for on in thresholds:
                    settings = EventSettings.resolve({**(timing or {}), "on": on, "off": round(on - hysteresis, 3),
                                                      "mode": "any"})
                    figures = score(self.walking, probs, settings)["unlabelled"]
                    alarms[on] += figures["false_alarms"]
                hours += figures["hours"]
            self._rates[key] = {on: alarms[on] / hours for on in thresholds}
        return self._rates[key]
