"""Real clocks (issue 28): a true rate with a few ms of timestamp jitter is accepted and nothing of it is lost; a
wrong declared rate is still refused; timestamps in milliseconds are recognised by their step size.

The real data: mobgap's lower-back walking (100 Hz, g), with jittered timestamps written by the test."""
from __future__ import annotations

import re

import numpy as np
import pytest

from deploy.clock import TOLERANCE, WINDOW, RateMismatch, RateWatch, estimate_period
from deploy.counters import Counters
from deploy.intake import Intake
from deploy.recording import read_recording
from tests.conftest import shared_path
from tests.daemon_harness import final_counters
from tests.daemon_harness import run_daemon as daemon
from tests.test_faults_stream import bundle, clean, env  # noqa: F401 (fixtures)


def _walking_100hz():
    folder = shared_path("data", "mobgap-walking")
    path = sorted(folder.glob("*/*/*Test11*.csv"))[0]
    rec = read_recording(path, layout="mobgap")
    assert rec.rate_hz == 100 and rec.units == "g"
    return rec


def jittered(n: int, rate: float, jitter: str, seed: int = 0) -> np.ndarray:
    """Timestamps of a true `rate` with jitter: "u4" uniform +-4 ms, "u2" +-2 ms, "g2" Gaussian sigma 2 ms."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    size = float(jitter[1:]) / 1000
    return t + (rng.uniform(-size, size, n) if jitter[0] == "u" else rng.normal(0, size, n))


def _lines(t, acc) -> str:
    return "".join(f"{ti:.6f},{a:.5f},{b:.5f},{c:.5f}\n" for ti, (a, b, c) in zip(t, acc))


@pytest.mark.shared
@pytest.mark.parametrize("jitter", ["u2", "u4", "g2"])
def test_jittered_real_100hz_is_accepted_at_its_rate(bundle, env, jitter):  # noqa: F811
    rec = _walking_100hz()
    n = 6000                                                          # 60 s of it
    result = daemon([bundle, "--stdin", "--rate-hz", "100", "--log-level", "warning"], env,
                    input=_lines(jittered(n, 100.0, jitter), rec.acc[:n]))
    c = clean(result)
    lost = sum(c["dropped"].values())
    assert c["rate_mismatches"] == 0 and c["rate_estimate_hz"] == pytest.approx(100, rel=0.005), c
    assert lost <= (0 if jitter[0] == "u" else 0.001 * n), c         # uniform: none; Gaussian 2 ms: <= 0.1 %
    assert c["accepted"] == n - lost and c["resets"] == 0


@pytest.mark.shared
def test_jittered_real_100hz_declared_64_is_still_refused(bundle, env):  # noqa: F811
    rec = _walking_100hz()
    result = daemon([bundle, "--stdin", "--log-level", "warning"], env,        # no --rate-hz: the model's 64 Hz
                    input=_lines(jittered(3000, 100.0, "u4"), rec.acc[:3000]))
    clean(result, 1)
    said = float(re.search(r"timestamps say ([0-9.]+) Hz", result.stderr).group(1))
    assert said == pytest.approx(100, rel=0.005) and "--rate-hz" in result.stderr


def test_millisecond_timestamps_are_refused_with_the_fix_and_time_unit_reads_them(bundle, env):  # noqa: F811
    t = np.arange(1280) / 64.0
    acc = np.tile([-1.0, 0.02, 0.05], (1280, 1)) + 0.01 * np.random.default_rng(0).normal(size=(1280, 3))
    result = daemon([bundle, "--stdin", "--log-level", "warning"], env, input=_lines(t * 1000, acc))
    c = clean(result, 1)
    assert "they are in ms, not seconds" in result.stderr and 'source.time_unit = "ms"' in result.stderr
    assert c["accepted"] <= 17 and c["resets"] <= 16 and result.stderr.count("gap of") <= 3
    ok = clean(daemon([bundle, "--stdin", "--set", 'source.time_unit="ms"', "--log-level", "warning"], env,
                      input=_lines(t * 1000, acc)))
    assert ok["accepted"] == 1280 and ok["rate_estimate_hz"] == pytest.approx(64, rel=1e-3)


# ------------------------------------------------------------------ the estimate's window and tolerance

@pytest.mark.parametrize("rate", [50.0, 64.0, 100.0, 128.0])
def test_the_window_estimate_stays_within_a_tenth_of_the_tolerance_under_jitter_up_to_half_a_period(rate):
    """The documented bound: jitter up to +-P/2 moves a 256-step estimate by at most P / 256 (0.4 %)."""
    for seed in range(20):
        t = jittered(WINDOW + 1, rate, f"u{500 / rate:g}", seed)      # +-P/2 uniform
        assert abs(1 / estimate_period(np.diff(t)) / rate - 1) <= 1 / WINDOW < TOLERANCE / 4


def test_gaps_and_resets_do_not_bias_the_estimate():
    t = np.arange(400) / 100.0
    t = np.delete(t, [50, 51, 52, 200])                               # a gap of 3 and one lost sample
    t[300:] -= 2.0                                                    # a clock reset
    assert 1 / estimate_period(np.diff(t)) == pytest.approx(100, rel=1e-6)


def test_a_wrong_declared_rate_is_refused_within_one_window():
    counters = Counters()
    watch = RateWatch(100.0, counters)
    t = jittered(2 * WINDOW, 98.0, "u4")                              # 2 % slow: just beyond the tolerance
    with pytest.raises(RateMismatch, match="say 97.9|say 98.0|say 98.1"):
        for i in range(len(t)):
            watch.check(t[i:i + 1])
    assert counters.rate_mismatches == 1


def test_the_intake_keeps_every_jittered_sample_in_order_and_finds_real_gaps():
    counters = Counters()
    intake = Intake(100.0, counters)
    t = jittered(3000, 100.0, "u4")
    t = np.delete(t, [1000, 2000, 2001])                              # one, then two samples lost
    acc = np.zeros((len(t), 3))
    for i in range(len(t)):
        intake.push(t[i:i + 1], acc[i:i + 1])
    assert counters.accepted == len(t) and not counters.dropped
    assert counters.interpolated == 3 and counters.gaps_filled == 2
