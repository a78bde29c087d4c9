"""No traceback reaches a user (issue 28): each case of the second red-team pass that ended in a traceback, or said
too little, now ends in one clear line naming the problem and the fix (exit 2 before READY), or a warning."""
from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from deploy.daemon import main as daemon_main
from tests.helpers_bundle import CLASSES, make_bundle
from tests.daemon_harness import REPO, Daemon, daemon_env, final_counters, run_daemon
from tests.test_faults_stream import lines


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("tb") / "bundle")


@pytest.fixture
def env():
    return daemon_env()


def _refused(result, *needles):
    """Exit 2, one error line naming the fix, no traceback, nothing ran (no READY)."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "fog-daemon ready" not in result.stderr, result.stderr[-2000:]
    for needle in needles:
        assert needle in result.stderr, result.stderr[-2000:]


def test_malformed_watchdog_usec_stops_the_start(bundle, env):
    env["WATCHDOG_USEC"] = "abc"
    _refused(run_daemon([bundle, "--stdin"], env, input=""), "WATCHDOG_USEC='abc'", "WatchdogSec=")


def test_metrics_port_in_use_stops_the_start(bundle, env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _refused(run_daemon([bundle, "--stdin", "--metrics-port", port], env, input=""),
                 f"metrics_port = {port}", "choose a free port")


@pytest.mark.parametrize("body, needles", [
    ("bundle = 'B'\n".encode("utf-16"), ("UTF-16", "iconv")),
    (b"\xef\xbb\xbfbundle = 'B'\n", ("byte-order mark", "remove the BOM")),
    (b"bundle = 'B'\nx = '\xe9'\n", ("not UTF-8", "line 2")),
])
def test_config_encodings_are_named(bundle, capsys, tmp_path, body, needles):
    path = tmp_path / "d.toml"
    path.write_bytes(body.replace(b"B", str(bundle).encode()) if b"B'" in body else body)
    assert daemon_main(["--config", str(path), "--stdin"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(n in err for n in needles), err


def test_config_naming_a_folder(capsys, tmp_path):
    assert daemon_main(["--config", str(tmp_path), "--stdin"]) == 2
    assert "is a folder; --config takes the TOML file itself" in capsys.readouterr().err


def test_negative_max_seconds_is_refused(bundle, env):
    result = run_daemon([bundle, "--stdin", "--max-seconds", "-1"], env, input="")
    assert result.returncode == 2 and "--max-seconds: '-1': give a number of seconds above 0" in result.stderr


def test_state_file_holding_a_list_is_replaced_with_a_warning(bundle, env, tmp_path):
    state = tmp_path / "open_onsets.json"
    state.write_text("[1, 2]")
    result = run_daemon([bundle, "--stdin", "--set", f'stream.state_file="{state}"', "--log-level", "warning"], env,
                     input=lines(64.0, 2))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "holds a JSON list, not the daemon's table of open onsets" in result.stderr
    assert json.loads(state.read_text()) == {}


def test_lines_with_the_wrong_column_count_are_named_with_the_fix(bundle, env):
    text = "".join(f"{i / 64:.4f},-1,0,0,5\n" for i in range(200))
    result = run_daemon([bundle, "--stdin", "--log-level", "warning"], env, input=text)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "lines rejected (1 columns" in result.stderr and "'0.0000,-1,0,0,5'" in result.stderr
    assert "a line holds 4 fields, t,AccV,AccML,AccAP" in result.stderr
    assert final_counters(result.stderr)["dropped"] == {"columns": 200}


def test_sigterm_says_why_it_cut_an_open_episode(env, tmp_path):
    bundle = make_bundle(tmp_path / "ev", events={
        "hop_s": 0.5, "lookahead_s": 0.5, "smoothing_s": 0.25, "on": {c: 0.52 for c in CLASSES},
        "off": {c: 0.05 for c in CLASSES}, "min_duration_s": 0.5, "refractory_s": 0.5})   # it never ends by itself
    with Daemon([bundle, "--stdin", "--log-level", "warning"], env=env) as d:
        d.send(lines(64.0, 3))
        onset = json.loads(d.wait_for('"type":"onset"', stream="stdout"))   # stdin stays open: the episode goes on
        done = d.stop(signal.SIGTERM)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err[-2000:]
    ends = [json.loads(line) for line in out.splitlines() if '"type":"event"' in line]
    cut = [e for e in ends if e["class"] == onset["class"]]
    assert cut and cut[-1]["reason"] == "the daemon was stopped (SIGTERM)", out


def test_export_of_a_factory_that_is_not_a_model_factory(capsys, tmp_path):
    from toolkit.cli import main as cli
    for spec, needle in (("os:system", "names a builtin_function_or_method, not a model factory"),
                         ("json:dumps", "calling it with --factory-kwargs {} failed (TypeError"),
                         ("os.path:expanduser", "failed")):
        assert cli(["export", "--model", spec, "--target", "cpu", "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
    (tmp_path / "notamodel.py").write_text("def build():\n    return 42\n")
    os.chdir(tmp_path)
    try:
        assert cli(["export", "--model", "notamodel:build", "--target", "cpu", "--out", str(tmp_path / "o"),
                    "--quiet"]) == 2
    finally:
        os.chdir(REPO)
    assert "returned a int, not a torch.nn.Module" in capsys.readouterr().err
