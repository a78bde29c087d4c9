"""What the device says is what was scored (issue 27): real recordings replayed through `fog-daemon` give, one for
one, the events `toolkit evaluate` scored on the same bundle and recordings (onset and offset within one sample at
the model rate, class), and the default (trained on untyped Daphnet freezes: events.mode "any") raises one event per
detected freeze, not one per class. Daphnet S02R01 (the issue's recording: 38 onsets for its freezes before) and one
Stanford 64 Hz trial with freezes of each of the four people; skipped without ../shared or the shipped weights."""
from __future__ import annotations

import json

import pytest

from deploy.bundle import Bundle
from tests.conftest import shared_path
from tests.daemon_harness import run_daemon
from toolkit.api import evaluate

STANFORD_TRIALS = ("pt1_visit_34_tbc_walklr_0_trial_2", "pt2_visit_25_tbc_walklr_1_trial_1",
                   "pt5_visit_27_tbc_walklr_0_trial_2", "pt6_visit_19_tbc_walklr_0_trial_2")


def _recordings() -> list:
    daphnet = shared_path("data", "daphnet", "S02R01.txt")
    stanford = shared_path("data", "stanford-imu-fog-64hz")
    return [daphnet, *(stanford / f"{name}.npz" for name in STANFORD_TRIALS)]


def _daemon_events(bundle, path) -> tuple[list[dict], list[dict]]:
    """(onset messages, event messages) of the daemon replaying `path` as fast as it can."""
    done = run_daemon([bundle, "--replay", path, "--threads", "1", "--backend", "onnxruntime"], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return [m for m in messages if m["type"] == "onset"], [m for m in messages if m["type"] == "event"]


def _assert_same_events(scored: list[dict], sent: list[dict], rate_hz: float, where: str) -> None:
    sample = 1.0 / rate_hz + 1e-6
    assert len(sent) == len(scored), f"{where}: the daemon sent {len(sent)} events, evaluate scored {len(scored)}"
    for a, b in zip(sorted(scored, key=lambda e: e["onset_s"]), sorted(sent, key=lambda e: e["onset_s"])):
        assert a["class"] == b["class"], where
        assert abs(a["onset_s"] - b["onset_s"]) <= sample and abs(a["offset_s"] - b["offset_s"]) <= sample, \
            f"{where}: evaluate {a} vs daemon {b}"


@pytest.mark.shared
def test_the_daemon_sends_the_events_evaluate_scored_on_real_recordings(default_bundle):
    if default_bundle is None:
        pytest.skip("models/weights/fog-small.pt is absent")
    paths = _recordings()
    bundle = Bundle.load(default_bundle)
    assert bundle.events.mode == "any"         # trained on untyped Daphnet freezes (models/weights/fog-small.json)
    result = evaluate(default_bundle, paths, thresholds=None)
    scored = result.model["per_recording"]
    detected = 0
    for path, figures in zip(paths, scored):
        onsets, events = _daemon_events(default_bundle, path)
        _assert_same_events(figures["event_list"], events, bundle.input.spec.rate_hz, path.name)
        # one onset per detected freeze: every onset opens exactly one event, and no two events overlap in time
        assert len(onsets) == len(events) and {e["class"] for e in events} <= {"FOG"}
        ordered = sorted(events, key=lambda e: e["onset_s"])
        assert all(a["offset_s"] <= b["onset_s"] for a, b in zip(ordered, ordered[1:])), path.name
        detected += figures["event_metrics"]["sensitivity"] * figures["event_metrics"]["episodes_true"]
    assert detected > 0                        # the trained default does find real freezes here
    s02r01 = scored[0]
    print(f"\nS02R01: {len(s02r01['event_list'])} onsets ({s02r01['events']} in the experiment), "
          f"{s02r01['event_metrics']['episodes_true']} labelled freezes, sensitivity "
          f"{s02r01['event_metrics']['sensitivity']:.2f}")
