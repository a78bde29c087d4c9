"""Fault injection, the stream (issue 15): time is the sensor's, a live source that fails is a failure (exit 1, or a
reconnect), sinks that fail are counted per sink and never stop the daemon, signals are handled. Every run: no
traceback, the counters printed and balanced (received = accepted + every named loss)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from deploy.recording import Recording, write_recording
from tests.test_daemon import REPO, daemon, final_counters
from tests.helpers_bundle import make_bundle
from tests.test_stream import walking_recording


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("stream") / "bundle")


@pytest.fixture(scope="module")
def env():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NOTIFY_SOCKET", None)
    return env


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "walk.npz"
    write_recording(walking_recording(60.0), path, "npz")
    return path


def lines(rate, seconds, t0=0.0):
    x = walking_recording(seconds, rate=rate).acc
    return "".join(f"{t0 + i / rate:.6f},{a:.4f},{b:.4f},{c:.4f}\n" for i, (a, b, c) in enumerate(x))


def clean(result, code=0):
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    counters = final_counters(result.stderr)
    assert counters["balanced"], counters
    return counters


# ------------------------------------------------------------------ time is the sensor's

def test_stdin_at_100hz_without_rate_is_refused_not_time_stretched(bundle, env):
    result = daemon([bundle, "--stdin", "--log-level", "warning"], env, input=lines(100.0, 20))
    c = clean(result, 1)
    assert "timestamps say 100.00 Hz" in result.stderr and "--rate-hz" in result.stderr
    assert c["rate_mismatches"] >= 1 and c["dropped"]["rate_mismatch"] > 0 and c["accepted"] <= 256


def test_stdin_at_100hz_with_its_rate_runs(bundle, env):
    c = clean(daemon([bundle, "--stdin", "--rate-hz", "100", "--log-level", "warning"], env, input=lines(100.0, 20)))
    assert c["accepted"] == 2000 and c["rate_mismatches"] == 0 and c["rate_estimate_hz"] == pytest.approx(100, 0.01)


def test_rate_check_warn_counts_and_runs(bundle, env):
    result = daemon([bundle, "--stdin", "--set", 'source.rate_check="warn"'], env, input=lines(100.0, 10))
    c = clean(result)
    # the intake's grid follows the stream's true period within ~30 samples; what comes too early until then is
    # dropped and counted (too_close): 100 Hz declared as 64 Hz is 36 % off
    assert c["rate_mismatches"] >= 1 and c["accepted"] >= 970 and "timestamps say" in result.stderr
    assert c["accepted"] + c["dropped"].get("too_close", 0) == 1000


def test_clock_reset_starts_a_new_segment(bundle, env):
    c = clean(daemon([bundle, "--stdin", "--log-level", "warning"], env, input=lines(64.0, 10) + lines(64.0, 10)))
    # the first sample after the reset is dropped (it could be a stray); the second confirms the reset
    assert c["clock_resets"] == 1 and c["accepted"] == 1279 and c["dropped"] == {"out_of_order": 1}


def test_replay_honours_the_time_column(bundle, env, tmp_path):
    rec = walking_recording(20.0)
    time_col = np.arange(rec.n_samples, dtype=np.float64)
    time_col[640:] += 100_000                                  # a jump of 100,000 samples
    path = tmp_path / "gap.npz"
    write_recording(Recording(rec.acc, rec.rate_hz, rec.units, time=time_col), path, "npz")
    c = clean(daemon([bundle, "--replay", path, "--log-level", "warning"], env))
    assert c["resets"] == 1 and c["accepted"] == rec.n_samples


# ------------------------------------------------------------------ live sources that end

def _serial_daemon(bundle, env, *extra):
    master, slave = os.openpty()
    name = os.ttyname(slave)
    proc = subprocess.Popen([sys.executable, "-m", "deploy", str(bundle), "--serial", name, *extra,
                             "--log-level", "info"], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    return proc, master


def _wait_ready(proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if "fog-daemon ready" in line or not line:
            return "".join(seen)
    raise AssertionError("daemon not ready: " + "".join(seen))


def _serial_session(bundle, env, unplug, *extra) -> tuple[int, str]:
    """Start the daemon on a pty, let `unplug(proc, master)` act after READY, wait for the end: (rc, stderr)."""
    proc, master = _serial_daemon(bundle, env, *extra)
    try:
        seen = _wait_ready(proc)
        unplug(proc, master)
        _, rest = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, seen + rest


def test_serial_disconnect_exits_nonzero(bundle, env):
    pytest.importorskip("serial")

    def unplug(proc, master):
        os.write(master, lines(64.0, 3).encode())
        time.sleep(0.5)
        os.close(master)                                       # the sensor is unplugged
    rc, stderr = _serial_session(bundle, env, unplug)
    assert rc == 1, stderr[-2000:]
    assert "source serial failed" in stderr or "source serial ended" in stderr
    assert final_counters(stderr)["balanced"] and "Traceback" not in stderr


def test_serial_disconnect_with_reconnect_retries_until_stopped(bundle, env):
    pytest.importorskip("serial")

    def unplug_then_stop(proc, master):
        os.close(master)
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
    rc, stderr = _serial_session(bundle, env, unplug_then_stop, "--set", 'source.on_end="reconnect"',
                                 "--set", "source.reconnect_max_s=0.5")
    assert rc == 0, stderr[-2000:]
    assert final_counters(stderr)["source_restarts"] >= 1 and "reconnecting" in stderr


# ------------------------------------------------------------------ sinks

def test_udp_sink_that_does_not_resolve_is_refused_at_start(bundle, env, walk):
    result = daemon([bundle, "--replay", walk, "--sink", "udp://no-such-host.invalid:5006"], env)
    assert result.returncode == 2 and "does not resolve" in result.stderr and "Traceback" not in result.stderr


def test_dev_full_sink_counts_its_failures(bundle, env, walk):
    c = clean(daemon([bundle, "--replay", walk, "--sink", "file:/dev/full?probs", "--log-level", "warning"],
                     env))
    assert c["sink_failures"]["jsonl:/dev/full"] >= c["hops_run"] - 2 > 0  # every probs message counted


def test_closed_stdout_counts_its_failures(bundle, env, walk):
    proc = subprocess.Popen([sys.executable, "-m", "deploy", str(bundle), "--replay", str(walk), "--realtime",
                             "--speed", "20", "--sink=-?probs", "--log-level", "warning"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()                                        # nobody reads the events
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
    c = final_counters(stderr)
    assert c["balanced"] and c["sink_failures"]["jsonl:-"] >= c["hops_run"] - 10 > 0


def test_mqtt_broker_down_at_start_never_stops_the_daemon(bundle, env, walk, tmp_path):
    pytest.importorskip("paho.mqtt.client")
    config = tmp_path / "d.toml"
    config.write_text(f'bundle = "{bundle}"\n[source]\nkind = "replay"\npath = "{walk}"\n'
                      '[[sinks]]\nkind = "mqtt"\nhost = "127.0.0.1"\nport = 9\nconnect_timeout_s = 0.2\n'
                      '[[sinks]]\nkind = "jsonl"\npath = "-"\nprobs = true\n')
    result = daemon(["--config", config, "--log-level", "warning"], env)
    c = clean(result)
    assert "not connected yet" in result.stderr and c["hops_run"] > 0
    assert result.stdout.count('"type":"probs"') > 0               # the other sink still delivers


def test_sighup_reopens_file_sinks_and_keeps_running(bundle, env, tmp_path):
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "deploy", str(bundle), "--stdin", "--sink", f"file:{out}",
                             "--log-level", "info"], env=env, cwd=REPO, stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        seen = _wait_ready(proc)
        proc.stdin.write(lines(64.0, 5))
        proc.stdin.flush()
        out.rename(tmp_path / "events.1.jsonl")                 # logrotate moves the file away
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None
        proc.stdin.write(lines(64.0, 5, t0=5.0))
        proc.stdin.close()
        proc.wait(timeout=20)
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = seen + rest
    assert proc.returncode == 0 and "SIGHUP" in stderr and out.exists(), stderr[-2000:]
    c = final_counters(stderr)
    assert c["balanced"] and c["accepted"] == 640


# ------------------------------------------------------------------ SIGKILL: open onsets are closed at the next start

def test_sigkill_leaves_an_onset_that_the_next_start_closes(env, tmp_path):
    import json

    from tests.helpers_bundle import CLASSES

    bundle = make_bundle(tmp_path / "ev", events={
        "hop_s": 0.5, "lookahead_s": 0.5, "smoothing_s": 0.25, "on": {c: 0.52 for c in CLASSES},
        "off": {c: 0.45 for c in CLASSES}, "min_duration_s": 0.5, "refractory_s": 0.5})
    state = tmp_path / "state" / "open_onsets.json"
    argv = [sys.executable, "-m", "deploy", str(bundle), "--stdin", "--set", f'stream.state_file="{state}"',
            "--log-level", "warning"]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        proc.stdin.write(lines(64.0, 3))
        proc.stdin.flush()
        onset = proc.stdout.readline()                 # the pipe stays open: the episode is going on
        assert '"type":"onset"' in onset
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = json.loads(state.read_text())
    assert json.loads(onset)["class"] in left
    again = subprocess.run(argv, env=env, cwd=REPO, input="", capture_output=True, text=True, timeout=60)
    c = clean(again)
    first = json.loads(again.stdout.splitlines()[0])
    assert first["type"] == "aborted" and first["class"] == json.loads(onset)["class"] and first["offset_s"] is None
    assert c["aborted_onsets"] == len(left) and json.loads(state.read_text()) == {}


def test_udp_datagrams_the_kernel_drops_are_counted():
    import queue
    import socket
    import threading

    from deploy.counters import Counters
    from deploy.feed import Feed
    from deploy.sources import UdpSource

    source = UdpSource(port=0, rcvbuf=4096, rate_hz=64.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 3000
    for i in range(sent):                                      # a burst the small buffer cannot hold
        sender.sendto(f"{i / 64:.6f},-1,0,0".encode(), ("127.0.0.1", source.port))
    counters, inbox, stop = Counters(), queue.Queue(maxsize=100_000), threading.Event()
    feed = Feed(source, inbox, counters, stop)
    thread = feed.start()
    time.sleep(0.5)
    # the kernel hands its drop count over with the next datagram it queues: the stream goes on
    sender.sendto(f"{sent / 64:.6f},-1,0,0".encode(), ("127.0.0.1", source.port))
    sent += 1
    sender.close()
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=5)
    received = 0
    while not inbox.empty():
        item = inbox.get()
        received += getattr(item, "received", 0)
    assert counters.kernel_dropped_datagrams > 0
    assert received + counters.kernel_dropped_datagrams == sent


def test_a_chunk_the_pipeline_fails_on_is_counted(bundle):
    import threading

    from deploy.config import build_config
    from deploy.daemon import _process, wire
    from deploy.sources import parse_lines

    w = wire(build_config(None, [{"bundle": str(bundle)}]))
    chunk = parse_lines(lines(64.0, 1).splitlines())

    def broken(_):
        raise RuntimeError("a bug")
    w.pipeline.push = broken
    _process(chunk, w, threading.Event())
    assert w.counters.dropped["pipeline_error"] == 64 and w.counters.balanced()
