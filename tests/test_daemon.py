"""fog-daemon as a user runs it: in a subprocess where torch cannot be imported, with a config, under signals."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from deploy.config import build_config, parse_set, parse_sink
from deploy.errors import FogError
from deploy.recording import write_recording
from tests.daemon_harness import REPO, Daemon, final_counters, run_daemon
from tests.helpers_bundle import make_bundle
from tests.test_stream import walking_recording


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def walk_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "walk.npz"
    write_recording(walking_recording(60.0), path, "npz")
    return path


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory):
    """PYTHONPATH with stub torch and scipy packages that raise on import: the device has neither."""
    stubs = tmp_path_factory.mktemp("stubs")
    for name in ("torch", "scipy"):
        (stubs / name).mkdir()
        (stubs / name / "__init__.py").write_text(f"raise ImportError('{name} is not available on the device')\n")
    env = dict(os.environ, PYTHONPATH=f"{stubs}{os.pathsep}{REPO}")
    env.pop("NOTIFY_SOCKET", None)
    return env


def test_daemon_runs_without_torch(bundle_dir, walk_npz, no_torch_env, tmp_path):
    check = subprocess.run([sys.executable, "-c", "import torch"], env=no_torch_env, capture_output=True, text=True)
    assert check.returncode != 0 and "not available on the device" in check.stderr
    out = tmp_path / "events.jsonl"
    result = run_daemon([bundle_dir, "--replay", walk_npz, "--sink", f"file:{out}?probs", "--hop-s", "0.5"],
                    no_torch_env)
    assert result.returncode == 0, result.stderr
    counters = final_counters(result.stderr)
    assert counters["received"] == counters["accepted"] == 3840 and counters["balanced"]
    assert counters["hops_run"] == 120
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    decided = sum(len(m["p"]) for m in messages if m["type"] == "probs")
    assert decided == 3840, "every accepted sample is decided exactly once"


def test_tampered_bundle_is_refused(bundle_dir, walk_npz, no_torch_env, tmp_path):
    import shutil
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    model = copy / "model_fp32.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    result = run_daemon([copy, "--replay", walk_npz], no_torch_env)
    assert result.returncode == 2
    assert "error:" in result.stderr and "failed verification" in result.stderr
    assert "sha256 differs" in result.stderr and "Traceback" not in result.stderr


def test_missing_bundle_and_bad_sink_are_clear_errors(walk_npz, no_torch_env, tmp_path):
    result = run_daemon([tmp_path / "nope", "--replay", walk_npz], no_torch_env)
    assert result.returncode == 2 and "no manifest.json" in result.stderr and "Traceback" not in result.stderr
    result = run_daemon([tmp_path, "--sink", "carrier-pigeon"], no_torch_env)
    assert result.returncode == 2 and "--sink" in result.stderr


def test_sigterm_drains_and_exits_zero_with_systemd_notify_and_metrics(bundle_dir, no_torch_env, tmp_path):
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(10)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    env = dict(no_torch_env, NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="400000")
    with Daemon([bundle_dir, "--udp-port", "0", "--metrics-port", str(metrics_port), "--status-interval", "0.3"],
                env=env, stdin=False) as d:
        try:
            messages = []   # systemd's protocol: READY=1 first, then the watchdog's heartbeat and status lines
            while not (any(m == "WATCHDOG=1" for m in messages) and any(m.startswith("STATUS=") for m in messages)):
                messages.append(notify.recv(4096).decode())
        finally:
            notify.close()
        assert messages[0] == "READY=1" and any(m.startswith("STATUS=") for m in messages)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "fog_samples_received_total 0" in text and "fog_hops_skipped_behind_total" in text
        done = d.stop(signal.SIGTERM)
    assert done.returncode == 0, done.stderr
    assert done.counters["balanced"]


def test_stdin_fault_injection_accounts_for_every_sample(bundle_dir, no_torch_env):
    rate, lines, good = 64.0, [], 0
    t = 0.0
    for i in range(64 * 20):
        t = i / rate
        lines.append(f"{t:.6f},-1.0,{0.1 * (i % 7)},0.05")
        good += 1
    faults = ["garbage line", "x,y,z,w", "1.0,2.0", f"{t + 0.01},nan,0,0", f"{t + 0.012},inf,0,0", f"{t},-1,0,0",
              f"{t - 1.0},-1,0,0", "", "# a comment", "1,2,3,4,5"]
    # a short gap (interpolated), then a long gap (window restarts), then more good samples
    t_short = t + 4 / rate
    t_long = t_short + 5.0
    tail = [f"{t_short:.6f},-1,0,0"] + [f"{t_long + i / rate:.6f},-1,0,0" for i in range(64 * 3)]
    text = "\n".join(lines + faults + tail) + "\n"
    result = run_daemon([bundle_dir, "--stdin", "--sink", "-", "--log-level", "warning"], no_torch_env, input=text)
    assert result.returncode == 0, result.stderr
    c = final_counters(result.stderr)
    assert c["balanced"]
    assert c["dropped"] == {"parse": 1, "columns": 3, "non_finite": 2, "duplicate": 1, "out_of_order": 1}
    assert c["accepted"] == good + len(tail)
    assert c["interpolated"] == 3 and c["gaps_filled"] == 1 and c["resets"] == 1
    assert "window restarted" in result.stderr


def test_config_file_and_overrides(tmp_path, bundle_dir):
    path = tmp_path / "d.toml"
    path.write_text(f'bundle = "{bundle_dir}"\n[stream]\nhop_s = 0.25\n[[sinks]]\nkind = "udp"\nport = 9999\n')
    cfg = build_config(path, [parse_set("stream.lookahead_s=1.5"), parse_set("source.kind=\"udp\"")])
    assert cfg["stream"]["hop_s"] == 0.25 and cfg["stream"]["lookahead_s"] == 1.5
    assert cfg["sinks"] == [{"kind": "udp", "port": 9999}] and cfg["source"]["kind"] == "udp"
    assert parse_sink("mqtt://127.0.0.1:1883/ward3?probs") == {"kind": "mqtt", "host": "127.0.0.1", "port": 1883,
                                                              "probs": True, "topic": "ward3"}
    with pytest.raises(FogError, match="unknown key"):
        build_config(None, [{"bundle": "x", "colour": "red"}])
    with pytest.raises(FogError, match="no bundle"):
        build_config(None, [])


def test_example_config_parses():
    cfg = build_config(REPO / "deploy" / "daemon.example.toml")
    assert cfg["source"]["kind"] and cfg["sinks"]


def _message_types(text: str) -> set[str]:
    return {json.loads(line)["type"] for line in text.splitlines() if line.startswith("{")}


@pytest.mark.parametrize("sink", [["--sink", "-?probs"], ["--sink=-?probs"], ["--sink", "-", "--probs"]],
                         ids=["separate", "equals", "probs-flag"])
def test_probabilities_to_stdout_by_sink_query_or_probs_flag(bundle_dir, walk_npz, no_torch_env, sink):
    """Issue 18 item 4: `--sink -?probs` stopped with "expected one argument"; `--probs` was never read."""
    result = run_daemon([bundle_dir, "--replay", walk_npz, *sink], no_torch_env)
    assert result.returncode == 0, result.stderr
    assert "probs" in _message_types(result.stdout)


def test_probs_flag_reaches_a_sink_from_the_config_file(bundle_dir, walk_npz, no_torch_env, tmp_path):
    out = tmp_path / "from-config.jsonl"
    config = tmp_path / "d.toml"
    config.write_text(f'bundle = "{bundle_dir}"\n[[sinks]]\nkind = "jsonl"\npath = "{out}"\n')
    result = run_daemon(["--config", config, "--replay", walk_npz, "--probs"], no_torch_env)
    assert result.returncode == 0, result.stderr
    assert "probs" in _message_types(out.read_text())
    without = tmp_path / "without.jsonl"
    config.write_text(f'bundle = "{bundle_dir}"\n[[sinks]]\nkind = "jsonl"\npath = "{without}"\n')
    assert run_daemon(["--config", config, "--replay", walk_npz], no_torch_env).returncode == 0
    assert "probs" not in _message_types(without.read_text())


def test_toolkit_serve_takes_the_sink_query_as_a_separate_value(bundle_dir, walk_npz, tmp_path):
    out = tmp_path / "serve.jsonl"
    result = subprocess.run([sys.executable, "-m", "toolkit.cli", "serve", str(bundle_dir), "--replay", str(walk_npz),
                             "--sink", f"file:{out}?probs", "--sink", "-?probs"], capture_output=True, text=True,
                            timeout=120, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert "probs" in _message_types(out.read_text()) and "probs" in _message_types(result.stdout)
