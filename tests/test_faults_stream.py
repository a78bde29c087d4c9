"""Fault injection, the stream (issue 15): time is the sensor's, a live source that fails is a failure (exit 1, or a
reconnect), sinks that fail are counted per sink and never stop the daemon, signals are handled. Every run: no
traceback, the counters printed and balanced (received = accepted + every named loss)."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from deploy.recording import Recording, write_recording
from tests.daemon_harness import Daemon, Taken, daemon_env, final_counters, run_daemon, wait_until
from tests.helpers_bundle import make_bundle
from tests.test_stream import walking_recording


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("stream") / "bundle")


@pytest.fixture(scope="module")
def env():
    return daemon_env()


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
    result = run_daemon([bundle, "--stdin", "--log-level", "warning"], env, input=lines(100.0, 20))
    c = clean(result, 1)
    assert "timestamps say 100.00 Hz" in result.stderr and "--rate-hz" in result.stderr
    assert c["rate_mismatches"] >= 1 and c["dropped"]["rate_mismatch"] > 0 and c["accepted"] <= 256


def test_stdin_at_100hz_with_its_rate_runs(bundle, env):
    c = clean(run_daemon([bundle, "--stdin", "--rate-hz", "100", "--log-level", "warning"], env, input=lines(100.0, 20)))
    assert c["accepted"] == 2000 and c["rate_mismatches"] == 0 and c["rate_estimate_hz"] == pytest.approx(100, 0.01)


def test_rate_check_warn_counts_and_runs(bundle, env):
    result = run_daemon([bundle, "--stdin", "--set", 'source.rate_check="warn"'], env, input=lines(100.0, 10))
    c = clean(result)
    # the intake's grid follows the stream's true period within ~30 samples; what comes too early until then is
    # dropped and counted (too_close): 100 Hz declared as 64 Hz is 36 % off
    assert c["rate_mismatches"] >= 1 and c["accepted"] >= 970 and "timestamps say" in result.stderr
    assert c["accepted"] + c["dropped"].get("too_close", 0) == 1000


def test_clock_reset_starts_a_new_segment(bundle, env):
    c = clean(run_daemon([bundle, "--stdin", "--log-level", "warning"], env, input=lines(64.0, 10) + lines(64.0, 10)))
    # the first sample after the reset is dropped (it could be a stray); the second confirms the reset
    assert c["clock_resets"] == 1 and c["accepted"] == 1279 and c["dropped"] == {"out_of_order": 1}


def test_replay_honours_the_time_column(bundle, env, tmp_path):
    rec = walking_recording(20.0)
    time_col = np.arange(rec.n_samples, dtype=np.float64)
    time_col[640:] += 100_000                                  # a jump of 100,000 samples
    path = tmp_path / "gap.npz"
    write_recording(Recording(rec.acc, rec.rate_hz, rec.units, time=time_col), path, "npz")
    c = clean(run_daemon([bundle, "--replay", path, "--log-level", "warning"], env))
    assert c["resets"] == 1 and c["accepted"] == rec.n_samples


# ------------------------------------------------------------------ live sources that end

def _serial_session(bundle, env, unplug, *extra) -> tuple[int, str]:
    """Start the daemon on a pty, let `unplug(daemon, master)` act after READY, wait for the end: (rc, stderr)."""
    master, slave = os.openpty()
    with Daemon([bundle, "--serial", os.ttyname(slave), *extra, "--log-level", "info"], env=env, stdin=False,
                stdout="null") as d:
        os.close(slave)
        d.wait_ready()
        unplug(d, master)
        done = d.finish()
    return done.returncode, done.stderr


def test_serial_disconnect_exits_nonzero(bundle, env):
    pytest.importorskip("serial")

    def unplug(d, master):
        os.write(master, lines(64.0, 3).encode())
        os.close(master)                                       # the sensor is unplugged
    rc, stderr = _serial_session(bundle, env, unplug)
    assert rc == 1, stderr[-2000:]
    assert "source serial failed" in stderr or "source serial ended" in stderr
    assert final_counters(stderr)["balanced"] and "Traceback" not in stderr


def test_serial_disconnect_with_reconnect_retries_until_stopped(bundle, env):
    pytest.importorskip("serial")

    def unplug_then_stop(d, master):
        os.close(master)
        d.wait_for("reconnecting in")                          # a reconnect attempt, counted before it is logged
        d.send_signal(signal.SIGTERM)
    rc, stderr = _serial_session(bundle, env, unplug_then_stop, "--set", 'source.on_end="reconnect"',
                                 "--set", "source.reconnect_max_s=0.5")
    assert rc == 0, stderr[-2000:]
    assert final_counters(stderr)["source_restarts"] >= 1 and "reconnecting" in stderr


# ------------------------------------------------------------------ sinks

def test_udp_sink_that_does_not_resolve_is_refused_at_start(bundle, env, walk):
    result = run_daemon([bundle, "--replay", walk, "--sink", "udp://no-such-host.invalid:5006"], env)
    assert result.returncode == 2 and "does not resolve" in result.stderr and "Traceback" not in result.stderr


def test_dev_full_sink_counts_its_failures(bundle, env, walk):
    c = clean(run_daemon([bundle, "--replay", walk, "--sink", "file:/dev/full?probs", "--log-level", "warning"],
                     env))
    assert c["sink_failures"]["jsonl:/dev/full"] >= c["hops_run"] - 2 > 0  # every probs message counted


def test_closed_stdout_counts_its_failures(bundle, env, walk):
    with Daemon([bundle, "--replay", walk, "--realtime", "--speed", "20", "--sink=-?probs", "--log-level", "warning"],
                env=env, stdin=False, stdout="closed") as d:       # nobody reads the events
        done = d.finish()
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    c = done.counters
    assert c["balanced"] and c["sink_failures"]["jsonl:-"] >= c["hops_run"] - 10 > 0


def test_mqtt_broker_down_at_start_never_stops_the_daemon(bundle, env, walk, tmp_path):
    pytest.importorskip("paho.mqtt.client")
    config = tmp_path / "d.toml"
    config.write_text(f'bundle = "{bundle}"\n[source]\nkind = "replay"\npath = "{walk}"\n'
                      '[[sinks]]\nkind = "mqtt"\nhost = "127.0.0.1"\nport = 9\nconnect_timeout_s = 0.2\n'
                      '[[sinks]]\nkind = "jsonl"\npath = "-"\nprobs = true\n')
    result = run_daemon(["--config", config, "--log-level", "warning"], env)
    c = clean(result)
    assert "not connected yet" in result.stderr and c["hops_run"] > 0
    assert result.stdout.count('"type":"probs"') > 0               # the other sink still delivers


def test_sighup_reopens_file_sinks_and_keeps_running(bundle, env, tmp_path):
    out = tmp_path / "events.jsonl"
    with Daemon([bundle, "--stdin", "--sink", f"file:{out}", "--log-level", "info"], env=env, stdout="null") as d:
        d.wait_ready()
        d.send(lines(64.0, 5))
        out.rename(tmp_path / "events.1.jsonl")                 # logrotate moves the file away
        d.send_signal(signal.SIGHUP)
        d.wait_for("reopening file sinks")                     # said once the handler has run
        assert d.running
        d.send(lines(64.0, 5, t0=5.0))
        d.close_stdin()
        done = d.finish()
    assert done.returncode == 0 and "SIGHUP" in done.stderr and out.exists(), done.stderr[-2000:]
    c = done.counters
    assert c["balanced"] and c["accepted"] == 640


# ------------------------------------------------------------------ SIGKILL: open onsets are closed at the next start

def test_sigkill_leaves_an_onset_that_the_next_start_closes(env, tmp_path):
    import json

    from tests.helpers_bundle import CLASSES

    bundle = make_bundle(tmp_path / "ev", events={
        "hop_s": 0.5, "lookahead_s": 0.5, "smoothing_s": 0.25, "on": {c: 0.52 for c in CLASSES},
        "off": {c: 0.45 for c in CLASSES}, "min_duration_s": 0.5, "refractory_s": 0.5})
    state = tmp_path / "state" / "open_onsets.json"
    argv = [bundle, "--stdin", "--set", f'stream.state_file="{state}"', "--log-level", "warning"]
    with Daemon(argv, env=env) as d:
        d.send(lines(64.0, 3))
        onset = d.wait_for('"type":"onset"', stream="stdout")   # stdin stays open: the episode is going on
        d.stop(signal.SIGKILL)
    left = json.loads(state.read_text())
    assert json.loads(onset)["class"] in left
    again = run_daemon(argv, env, input="")
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
    take = Taken(inbox)

    def one_more() -> bool:
        # the kernel hands its drop count over with the next datagram it has room to queue: the stream goes on
        nonlocal sent
        sender.sendto(f"{sent / 64:.6f},-1,0,0".encode(), ("127.0.0.1", source.port))
        sent += 1
        return counters.kernel_dropped_datagrams > 0
    wait_until(one_more, what="the kernel's drop count")
    sender.close()
    wait_until(lambda: take() + counters.kernel_dropped_datagrams >= sent, what="every datagram accounted for")
    stop.set()
    thread.join(timeout=5)
    assert counters.kernel_dropped_datagrams > 0
    assert take() + counters.kernel_dropped_datagrams == sent


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
