"""The example config keeps export's choices (issue 27): deploy/daemon.example.toml, copied as it is (deploy/JETSON.md
says to), overrides nothing the bundle's manifest owns: the event settings (hop, look-ahead, thresholds, durations)
and the precision. It used to set lookahead_s = 0.5 over a bundle's validated 1.0 s."""
from __future__ import annotations

from deploy.config import build_config, event_settings
from deploy.contract.events import EventSettings
from deploy.settings_docs import EXAMPLE
from tests.helpers_bundle import TEST_EVENTS, make_bundle

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# What the manifest owns: every event setting (the [events] table, and hop/look-ahead under [stream]) and the graph.
EVENT_KEYS = tuple(EventSettings.__dataclass_fields__)
STREAM_EVENT_KEYS = ("hop_s", "lookahead_s")


def test_the_example_sets_nothing_the_manifest_owns():
    raw = tomllib.loads(EXAMPLE.read_text())
    owned = {f"stream.{k}" for k in STREAM_EVENT_KEYS if k in raw.get("stream", {})}
    owned |= {f"events.{k}" for k in raw.get("events", {})}
    owned |= {k for k in ("precision",) if k in raw}
    assert not owned, f"deploy/daemon.example.toml overrides the bundle's {sorted(owned)}: comment them out " \
                      "(default: the bundle's)"
    assert set(STREAM_EVENT_KEYS) <= set(EVENT_KEYS)


def test_a_daemon_configured_by_the_example_runs_the_bundles_event_settings(tmp_path):
    """A bundle whose export chose other values than the contract's defaults keeps every one of them."""
    chosen = {**TEST_EVENTS, "hop_s": 0.25, "lookahead_s": 2.0, "on": 0.7, "off": 0.45, "min_duration_s": 1.5,
              "smoothing_s": 0.75, "refractory_s": 3.0}
    bundle_dir = make_bundle(tmp_path / "bundle", events=chosen)
    from deploy.bundle import Bundle
    bundle = Bundle.load(bundle_dir)
    config = build_config(EXAMPLE, [{"bundle": str(bundle_dir)}])
    assert config["precision"] is None
    running = event_settings(config, bundle)
    assert running == EventSettings.resolve(bundle.events)
    for key in ("hop_s", "lookahead_s", "min_duration_s", "smoothing_s", "refractory_s"):
        assert getattr(running, key) == chosen[key], key
    assert set(running.on.values()) == {0.7} and set(running.off.values()) == {0.45}


def test_the_jetson_guide_says_the_event_settings_stay_the_bundles():
    from pathlib import Path
    guide = " ".join((Path(__file__).resolve().parents[1] / "deploy" / "JETSON.md").read_text().split())
    assert "daemon.example.toml" in guide and "the daemon then runs what the bundle's export chose" in guide
