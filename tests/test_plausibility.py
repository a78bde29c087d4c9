"""A sensor that lies (issue 28): units off by 9.8x are refused naming the fix, flat and all-zero channels, values
beyond any accelerometer and a rotated sensor are counted and warned about; real recordings raise none of it."""
from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from deploy.counters import Counters
from deploy.engines import open_engine
from deploy.plausibility import ImplausibleSignal, SignalWatch
from deploy.preprocess import PreprocessSpec
from deploy.recording import Recording, read_recording, write_recording
from deploy.bundle import Bundle
from deploy.sources import Chunk
from deploy.stream import Pipeline
from tests.conftest import shared_path
from tests.helpers_bundle import CLASSES
from tests.daemon_harness import run_daemon as daemon
from tests.test_faults_stream import bundle, clean, env  # noqa: F401 (fixtures)


def _stanford_ms2():
    path = sorted(shared_path("data", "stanford-imu-fog-64hz").glob("*.npz"))[0]
    rec = read_recording(path)
    assert rec.units == "m/s^2" and rec.rate_hz == 64
    return rec


def _mobgap_g():
    path = sorted(shared_path("data", "mobgap-walking").glob("*/*/*Test11*.csv"))[0]
    return read_recording(path, layout="mobgap")


def _lines(acc, rate) -> str:
    return "".join(f"{i / rate:.6f},{a:.5f},{b:.5f},{c:.5f}\n" for i, (a, b, c) in enumerate(acc))


def _watch(units="g", rate=64.0, **kw):
    counters = Counters()
    return SignalWatch(units, rate, counters, **kw), counters


@pytest.mark.shared
def test_real_ms2_data_declared_as_g_is_refused_with_the_fix(bundle, env):  # noqa: F811
    rec = _stanford_ms2()
    result = daemon([bundle, "--stdin", "--log-level", "warning"], env, input=_lines(rec.acc[:1920], 64))
    c = clean(result, 1)
    assert "m/s^2 data declared as g" in result.stderr and 'units = "m/s^2"' in result.stderr
    assert c["implausible"]["units"] == 2 and c["dropped"]["implausible_signal"] > 0 and c["hops_run"] <= 8
    ok = clean(daemon([bundle, "--stdin", "--units", "m/s^2", "--log-level", "warning"], env,
                      input=_lines(rec.acc[:1920], 64)))
    assert ok["implausible"] == {} and ok["accepted"] == 1920


@pytest.mark.shared
def test_real_g_data_declared_as_ms2_is_refused_with_the_fix(bundle, env):  # noqa: F811
    rec = _mobgap_g()
    result = daemon([bundle, "--stdin", "--rate-hz", "100", "--units", "m/s^2", "--log-level", "warning"], env,
                    input=_lines(rec.acc[:1500], 100))
    clean(result, 1)
    assert "g data declared as m/s^2" in result.stderr and 'units = "g"' in result.stderr


@pytest.mark.shared
def test_a_recording_whose_units_are_wrong_stops_the_replay_before_ready(bundle, env, tmp_path):  # noqa: F811
    rec = _stanford_ms2()
    path = tmp_path / "mislabelled.npz"
    write_recording(Recording(acc=rec.acc, rate_hz=64.0, units="g"), path, "npz")
    result = daemon([bundle, "--replay", path], env)
    assert result.returncode == 2 and "fog-daemon ready" not in result.stderr, result.stderr[-2000:]
    assert f"recording {path}: gravity reads" in result.stderr and "m/s^2 data declared as g" in result.stderr


@pytest.mark.shared
def test_real_recordings_raise_no_flag():
    """mobgap and the Stanford trials (every one): no units, gravity, flat-channel or orientation flag."""
    recordings = [read_recording(p, layout="mobgap") for p in shared_path("data", "mobgap-walking").glob("*/*/*.csv")]
    recordings += [read_recording(p) for p in shared_path("data", "stanford-imu-fog-64hz").glob("*.npz")]
    for rec in recordings:
        watch, counters = _watch(rec.units, rec.rate_hz)
        for i in range(0, rec.n_samples, 50):
            watch.check(rec.acc[i:i + 50])
        assert counters.implausible == {}, (rec.meta, counters.implausible)


@pytest.mark.parametrize("scale, units, needle", [(1000.0, "g", "mg (milli-g) data declared as g"),
                                                   (9.80665, "g", "m/s^2 data declared as g"),
                                                   (1.0, "m/s^2", "g data declared as m/s^2")])
def test_units_mistakes_need_two_blocks_in_a_row(scale, units, needle):
    walk = np.tile([-1.0, 0.05, 0.1], (256, 1)) + 0.05 * np.random.default_rng(0).normal(size=(256, 3))
    watch, counters = _watch(units)
    watch.check(walk[:128] * scale)                                   # one block: counted, not yet refused
    assert counters.implausible["units"] == 1
    with pytest.raises(ImplausibleSignal, match=re.escape(needle)):
        watch.check(walk[128:] * scale)
    with pytest.raises(ImplausibleSignal):                            # and every chunk after it
        watch.check(walk[:1])
    warn, counted = _watch(units, policy="warn")
    warn.check(walk * scale)
    assert counted.implausible["units"] == 2                          # warn: counted and run


def test_zero_and_stuck_channels_are_counted_and_named(caplog):
    watch, counters = _watch()
    with caplog.at_level(logging.WARNING, "deploy.plausibility"):
        watch.check(np.zeros((256, 3)))
        stuck = np.tile([-1.0, 0.0, 0.0], (128, 1))
        stuck[:, [0, 2]] += 0.05 * np.random.default_rng(1).normal(size=(128, 2))
        watch.check(stuck)
    assert counters.implausible == {"zero_signal": 2, "stuck_channel": 1}
    assert "every channel reads 0" in caplog.text and "AccML constant" in caplog.text
    assert caplog.text.count("zero_signal") == 1                      # said when it starts, not every block


def test_values_beyond_any_accelerometer_never_reach_the_window(tmp_path, caplog):
    from tests.helpers_bundle import make_bundle
    from tests.test_stream import walking_recording
    bundle = Bundle.load(make_bundle(tmp_path / "b"))
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    counters, probs = Counters(), []
    pipe = Pipeline(spec, open_engine(bundle, backend="onnxruntime", threads=1), CLASSES, counters,
                    source_units="g", source_rate_hz=64, hop_samples=32, lookahead_samples=32,
                    on_probs=lambda t, p, r: probs.append(p.copy()))
    rec = walking_recording(20.0)
    acc = rec.acc.copy()
    acc[300:305] = 1e308                                              # finite, and inf in float32
    watch = SignalWatch("g", 64, counters)
    with caplog.at_level(logging.WARNING, "deploy.plausibility"):
        for i in range(0, rec.n_samples, 16):
            counters.receive(16)
            watch.check(acc[i:i + 16])
            pipe.push(Chunk(np.arange(i, i + 16) / 64.0, acc[i:i + 16]))
    pipe.end_segment()
    assert np.isfinite(np.concatenate(probs)).all()
    assert counters.dropped == {"out_of_range": 5} and counters.interpolated == 5 and counters.balanced()
    assert counters.implausible["out_of_range"] == 1 and "beyond any accelerometer's range" in caplog.text


@pytest.mark.shared
def test_a_rotated_sensor_is_warned_about_unless_the_model_is_orientation_invariant(caplog):
    rec = _mobgap_g()
    swapped = rec.acc[:, [1, 0, 2]]                                   # AccV and AccML swapped: gravity on AccML
    watch, counters = _watch("g", 100.0)
    with caplog.at_level(logging.WARNING, "deploy.plausibility"):
        for i in range(0, 6000, 50):
            watch.check(swapped[i:i + 50])
    assert counters.implausible["orientation"] >= 5 and "gravity lies along -AccML" in caplog.text
    invariant, none = _watch("g", 100.0, orientation=False)          # a gravity_align bundle
    invariant.check(swapped[:6000])
    assert none.implausible == {}
