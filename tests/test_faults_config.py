"""Fault injection, settings (issue 15): whatever is wrong at start stops the start, before READY, with one line
naming the key and the fix, exit 2 and no traceback; nothing is discovered per chunk."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from deploy.daemon import main as daemon_main
from deploy.recording import Recording, write_recording
from tests.helpers_bundle import make_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("cfg") / "bundle")


def _fails(capsys, argv, *needles):
    assert daemon_main(argv) == 2
    err = capsys.readouterr().err
    assert "ready" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("flags, needle", [
    (["--stdin", "--hop-s", "nan"], "hop_s = nan: must be a finite number"),
    (["--stdin", "--hop-s", "-1"], "hop_s = -1.0: must be > 0"),
    (["--udp-port", "70000"], "port = 70000: must be >= 0 and <= 65535"),
    (["--replay", "x.csv", "--stdin"], "--replay and --stdin: the daemon reads one source"),
    (["--replay", "x.csv", "--realtime", "--speed", "0"], "speed = 0.0: must be > 0"),
    (["--stdin", "--rate-hz", "0"], "rate_hz = 0.0: must be > 0"),
    (["--stdin", "--rate-hz", "99.97"], "cannot resample 99.97 Hz"),
    (["--stdin", "--set", 'source.units="mg"'], "units = 'mg': choose one of 'g', 'm/s^2'"),
    (["--stdin", "--set", "events.on={Trun=0.5,StartHesitation=0.5,Walking=0.5}"], "did you mean 'Turn'?"),
    (["--stdin", "--set", "events.smoothing_s=1e9"], "smoothing_s = 1000000000.0: must be >= 0 and <= 60"),
    (["--stdin", "--set", "events.on=1.5"], "on = 1.5: must be >= 0 and <= 1"),
    (["--stdin", "--set", "events.on=0.3"], "each off threshold must be <= its on threshold"),
    (["--stdin", "--set", "stream.hopp_s=0.5"], "unknown key 'hopp_s' (did you mean 'hop_s'?)"),
    (["--stdin", "--set", "events.hop_s=0.5"], "it belongs under [stream]"),
    (["--stdin", "--set", "source.port=5"], "only a udp source takes it"),
    (["--stdin", "--set", "threads=0"], "threads = 0: must be >= 1"),
    (["--stdin", "--set", "stream.queue_chunks=1.5"], "expected an integer"),
    (["--stdin", "--set", "log.metrics_port=-1"], "metrics_port = -1"),
    (["--stdin", "--sink", "udp://127.0.0.1:0"], "port = 0: must be >= 1"),
    (["--stdin", "--lookahead-s", "soon"], "give seconds (e.g. 0.5) or 'full'"),
    (["--stdin", "--set", "bundle_digest=\"abc\""], "expected 'sha256:' and 64 hex digits"),
    (["--stdin", "--set", "stream.lookahead_s=\"later\""], "lookahead_s = 'later': expected a number"),
])
def test_bad_settings_fail_before_ready(bundle, capsys, flags, needle):
    _fails(capsys, [str(bundle), *flags], needle)


def test_toml_typos_name_the_nearest_key(bundle, capsys, tmp_path):
    for body, needle in ((f'bundle = "{bundle}"\nrealtim = true\n', "did you mean 'realtime' under [source]?"),
                         (f'bundle = "{bundle}"\n[source]\nkind = "replay"\npath = "x"\nrealtim = true\n',
                          "did you mean 'realtime'?"),
                         (f'bundle = "{bundle}"\n[events]\non_threshold = 0.5\n', "unknown key 'on_threshold'"),
                         (f'bundle = "{bundle}"\n[stream]\nhopp_s = 0.5\n', "did you mean 'hop_s'?"),
                         (f'bundle = "{bundle}"\n[source]\nunits = "mg"\n', "choose one of 'g', 'm/s^2'"),
                         (f'bundle = "{bundle}"\n[[sinks]]\nkind = "udp"\nhost = "127.0.0.1"\nport = 99999\n',
                          "port = 99999")):
        path = tmp_path / "d.toml"
        path.write_text(body)
        _fails(capsys, ["--config", str(path)], needle)


def test_replay_at_a_rate_that_cannot_be_resampled_fails_at_start(bundle, capsys, tmp_path):
    rec = Recording(acc=np.zeros((500, 3)), rate_hz=100.37, units="g")
    path = write_recording(rec, tmp_path / "odd.npz", "npz") or tmp_path / "odd.npz"
    _fails(capsys, [str(bundle), "--replay", str(path)], "cannot resample 100.37 Hz")


def test_no_traceback_from_a_real_process(bundle):
    """The same refusals from `python -m deploy`: exit 2 and one error line, nothing else on stderr."""
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    for flags in (["--hop-s", "nan", "--stdin"], ["--replay", "a.csv", "--stdin"], ["--stdin", "--rate-hz", "99.97"]):
        result = subprocess.run([sys.executable, "-m", "deploy", str(bundle), *flags], capture_output=True,
                                text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().startswith("python -m deploy: error:"), result.stderr
