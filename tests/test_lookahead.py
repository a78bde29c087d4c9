"""Look-ahead as a measured choice (issue 27): export's fidelity step measures the model streamed and offline at
several look-aheads, recommends one by a written rule, writes it into the manifest unless the user (or the preset)
set one, and the daemon runs what the bundle says unless its config overrides it."""
from __future__ import annotations

import json

import pytest

from deploy.bundle import Bundle
from deploy.config import build_config, event_settings
from tests.daemon_harness import run_daemon
from toolkit.cli import main as cli
from toolkit.export import lookahead

STAND_IN = ["--model", "tests.fixtures.user_models:tiny_convnet", "--rate-hz", "64", "--patch", "4",
            "--input-layout", "BCT", "--n-patches", "32", "--target", "cpu", "--quiet", "--allow-degenerate"]


def _row(called: float, overlap: float, whole: float) -> dict:
    return {"percent_time_called_fog_streamed": called, "overlap_with_whole_window": overlap,
            "difference_to_whole_window_pp": called - whole}


def test_the_rule_takes_the_smallest_look_ahead_that_calls_fog_where_whole_windows_do():
    table = {"0.5": _row(2.0, 0.40, 6.0), "1": _row(5.8, 0.70, 6.0), "2": _row(5.5, 0.80, 6.0),
             "4": _row(6.2, 0.95, 6.0), "full": _row(6.0, 1.0, 6.0)}
    assert lookahead.recommend(table) == ("2", "the rule")
    table["2"] = _row(4.8, 0.80, 6.0)                      # overlapping, but 1.2 pp less time called: not yet
    assert lookahead.recommend(table)[0] == "4"
    silent = {k: _row(0.0, 1.0, 0.0) for k in table}       # nothing called anywhere: nothing to choose by
    assert lookahead.recommend(silent)[0] == "1" and "nothing to choose by" in lookahead.recommend(silent)[1]
    assert lookahead.candidates(3.0) == [0.5, 1.0, 2.0, 3.0, 4.0, "full"] and lookahead.candidates(2.0)[2] == 2.0


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("lookahead")
    assert cli(["export", *STAND_IN, "--out", str(root / "measured")]) == 0
    assert cli(["export", *STAND_IN, "--lookahead-s", "2", "--out", str(root / "set")]) == 0
    return root / "measured", root / "set"


def test_export_writes_the_recommended_look_ahead_unless_one_was_set(bundles):
    measured, set_by_user = (Bundle.load(b) for b in bundles)
    table = measured.streaming.lookahead
    assert list(table["options"]) == ["0.5", "1", "2", "4", "full"] and table["rule"] == lookahead.RULE
    for row in table["options"].values():
        assert {"percent_time_called_fog_streamed", "percent_time_called_fog_offline", "decision_agreement",
                "overlap_with_whole_window"} <= set(row)
    assert table["chosen"] == table["recommended"] and table["chosen_by"].startswith("recommended")
    assert measured.events.lookahead_s == lookahead.as_setting(table["recommended"])
    assert measured.streaming.fidelity == table["options"][table["chosen"]]   # the figures of what the device runs
    kept = set_by_user.streaming.lookahead
    assert set_by_user.events.lookahead_s == 2.0 and kept["chosen"] == "2" and kept["chosen_by"].startswith("set")


def test_the_daemon_runs_the_bundles_look_ahead_unless_its_config_overrides_it(bundles):
    _, bundle_dir = bundles                                      # the bundle says 2 s
    bundle = Bundle.load(bundle_dir)
    assert event_settings(build_config(None, [{"bundle": str(bundle_dir)}]), bundle).lookahead_s == 2.0
    over = build_config(None, [{"bundle": str(bundle_dir), "stream": {"lookahead_s": 0.5}}])
    assert event_settings(over, bundle).lookahead_s == 0.5
    done = run_daemon([bundle_dir, "--stdin", "--threads", "1"], input="")
    assert done.returncode == 0, done.stderr[-2000:]
    said = [json.loads(line)["msg"] for line in done.stderr.splitlines() if line.startswith('{"ts"')]
    assert any("look-ahead 2.0 s (the bundle's)" in msg for msg in said), said
    keep = min(32 * 4, (2 * 64 // 32 + 1) * 32)                 # deploy.offline.contribution: window 128, hop 32
    assert any(f"look-ahead {keep} samples" in msg for msg in said), said
