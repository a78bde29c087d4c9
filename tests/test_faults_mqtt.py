"""Fault injection, MQTT with a real broker (issue 15): down at start, killed and restarted while the daemon runs.
The daemon never stops for its sink; every event message is delivered (paho's bounded QoS 1 queue) or counted."""
from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers_bundle import CLASSES, make_bundle
from tests.test_daemon import REPO, final_counters
from tests.test_daemon_e2e import free_port, mosquitto_binary
from tests.test_faults_stream import lines

mqtt = pytest.importorskip("paho.mqtt.client")


class Broker:
    def __init__(self, port, folder):
        self.port, self.conf, self.proc = port, folder / "mosquitto.conf", None
        # persistence: the subscriber's session (and the events queued for it) survives a broker restart
        # (`user`: mosquitto started as root would switch to the user 'mosquitto', who cannot write `folder`)
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nuser {getpass.getuser()}\n")

    def start(self):
        import socket
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not listen within 10 s")

    def stop(self, hard=False):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill() if hard else self.proc.terminate()
            self.proc.wait(timeout=5)


class Subscriber:
    """A persistent session (clean_session off, QoS 1): subscribed once, right after the broker first starts (before
    the daemon's next retry), it gets every event, also those published while it was reconnecting."""

    def __init__(self, port, events, lock):
        self.events, self.lock = events, lock
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fault-sub", clean_session=False)
        self.client.on_message = self._message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("fog/fault-dev/events", qos=1)
        self.client.loop_start()

    def _message(self, client, userdata, message):
        with self.lock:
            self.events.append(json.loads(message.payload))

    def wait_for(self, n, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.events) < n:
            time.sleep(0.05)
        return len(self.events)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def test_broker_down_at_start_then_killed_and_restarted(tmp_path):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto)")
    port = free_port()
    broker, subs, events, lock = Broker(port, tmp_path), [], [], threading.Lock()
    bundle = make_bundle(tmp_path / "ev", events={
        "hop_s": 0.5, "lookahead_s": 0.5, "smoothing_s": 0.25, "on": {c: 0.52 for c in CLASSES},
        "off": {c: 0.45 for c in CLASSES}, "min_duration_s": 0.5, "refractory_s": 0.5})
    config = tmp_path / "d.toml"
    config.write_text(f'bundle = "{bundle}"\ndevice_id = "fault-dev"\n[source]\nkind = "stdin"\n'
                      f'[[sinks]]\nkind = "mqtt"\nhost = "127.0.0.1"\nport = {port}\nconnect_timeout_s = 0.2\n'
                      'reconnect_max_s = 1\n[[sinks]]\nkind = "jsonl"\npath = "-"\n')
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "deploy", "--config", str(config), "--log-level", "warning"],
                            env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(lines(64.0, 20))                      # broker down: events queue in paho (QoS 1)
        proc.stdin.flush()
        time.sleep(1.0)
        assert proc.poll() is None                             # a sink never stops the daemon
        broker.start()
        subs.append(Subscriber(port, events, lock))
        first = subs[-1].wait_for(1)
        assert first > 0                                       # the queued events arrive once the broker is up
        broker.stop()                                          # stopped while the daemon runs
        proc.stdin.write(lines(64.0, 20, t0=20.0))
        proc.stdin.flush()
        time.sleep(1.0)
        broker.start()
        proc.stdin.write(lines(64.0, 5, t0=40.0))
        proc.stdin.close()
        proc.wait(timeout=30)
        stdout, stderr = proc.stdout.read(), proc.stderr.read()
        emitted = [json.loads(line) for line in stdout.splitlines() if '"type":"' in line]
        subs[-1].wait_for(len(emitted), timeout=8)
    finally:
        if proc.poll() is None:
            proc.kill()
        for sub in subs:
            sub.close()
        broker.stop(hard=True)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
    c = final_counters(stderr)
    failures = c["sink_failures"].get(f"mqtt:127.0.0.1:{port}/fog/fault-dev", 0)
    delivered = {(e["type"], e["class"], e["onset_s"]) for e in events}
    assert c["balanced"] and len(emitted) > 0
    assert len(delivered & {(e["type"], e["class"], e["onset_s"]) for e in emitted}) + failures >= len(emitted)
