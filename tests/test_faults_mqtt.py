"""Fault injection, MQTT with a real broker (issue 15): down at start, killed and restarted while the daemon runs.
The daemon never stops for its sink; every event message is delivered (paho's bounded QoS 1 queue) or counted."""
from __future__ import annotations

import json
import threading
import time

import pytest

from tests.daemon_harness import Broker, Daemon, mosquitto_binary
from tests.helpers_bundle import CLASSES, make_bundle
from tests.test_faults_stream import lines

mqtt = pytest.importorskip("paho.mqtt.client")


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


def _past(t_s: float):
    """A probs message on stdout for the samples from `t_s` on: the daemon has worked through the input up to there."""
    return lambda line: '"type":"probs"' in line and json.loads(line)["t0_s"] >= t_s


def test_broker_down_at_start_then_killed_and_restarted(tmp_path):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto)")
    broker, subs, events, lock = Broker(tmp_path, persistence=True), [], [], threading.Lock()
    port = broker.port
    bundle = make_bundle(tmp_path / "ev", events={
        "hop_s": 0.5, "lookahead_s": 0.5, "smoothing_s": 0.25, "on": {c: 0.52 for c in CLASSES},
        "off": {c: 0.45 for c in CLASSES}, "min_duration_s": 0.5, "refractory_s": 0.5})
    config = tmp_path / "d.toml"
    config.write_text(f'bundle = "{bundle}"\ndevice_id = "fault-dev"\n[source]\nkind = "stdin"\n'
                      f'[[sinks]]\nkind = "mqtt"\nhost = "127.0.0.1"\nport = {port}\nconnect_timeout_s = 0.2\n'
                      'reconnect_max_s = 1\n[[sinks]]\nkind = "jsonl"\npath = "-"\nprobs = true\n')
    try:
        with Daemon(["--config", config, "--log-level", "warning"]) as d:
            d.send(lines(64.0, 20))                            # broker down: events queue in paho (QoS 1)
            d.wait_for(_past(17.0), stream="stdout")           # ... while the daemon works through them
            assert d.running                                   # a sink never stops the daemon
            broker.start()
            subs.append(Subscriber(port, events, lock))
            first = subs[-1].wait_for(1)
            assert first > 0                                   # the queued events arrive once the broker is up
            broker.stop()                                      # stopped while the daemon runs
            d.send(lines(64.0, 20, t0=20.0))
            d.wait_for(_past(37.0), stream="stdout")           # these hops were published to no broker
            broker.start()
            d.send(lines(64.0, 5, t0=40.0))
            d.close_stdin()
            done = d.finish()
        emitted = [json.loads(line) for line in done.stdout.splitlines()
                   if '"type":"' in line and '"type":"probs"' not in line]
        subs[-1].wait_for(len(emitted), timeout=8)
    finally:
        for sub in subs:
            sub.close()
        broker.stop(hard=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    c = done.counters
    failures = c["sink_failures"].get(f"mqtt:127.0.0.1:{port}/fog/fault-dev", 0)
    delivered = {(e["type"], e["class"], e["onset_s"]) for e in events}
    assert c["balanced"] and len(emitted) > 0
    assert len(delivered & {(e["type"], e["class"], e["onset_s"]) for e in emitted}) + failures >= len(emitted)
