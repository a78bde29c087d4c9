"""End to end on loopback: samples in over UDP (with garbage and a burst), events and probabilities out over MQTT
through a real mosquitto broker started by the test. Bounded: every wait has a deadline, the daemon is stopped."""
from __future__ import annotations

import json
import signal
import socket
import threading
import time

import numpy as np
import pytest

from tests.daemon_harness import Broker, Daemon, free_port, mosquitto_binary, wait_until
from tests.helpers_bundle import make_bundle
from tests.test_stream import walking_recording


@pytest.fixture
def broker(tmp_path):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto); the MQTT end-to-end test needs it")
    started = Broker(tmp_path).start()
    yield started.port
    started.stop()


def test_udp_in_mqtt_out(broker, tmp_path):
    import paho.mqtt.client as mqtt

    bundle = make_bundle(tmp_path / "bundle")
    received: list[dict] = []
    lock = threading.Lock()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    sub.on_message = lambda c, u, m: (lock.acquire(), received.append(json.loads(m.payload)), lock.release())
    sub.connect("127.0.0.1", broker)
    sub.subscribe([("ward/e2e-dev/events", 1), ("ward/e2e-dev/probs", 1)])
    sub.loop_start()

    udp_port = free_port(socket.SOCK_DGRAM)
    # low thresholds on the untrained tiny model, so events certainly occur
    rec = walking_recording(12.0)
    with Daemon([bundle, "--udp-port", udp_port, "--sink", f"mqtt://127.0.0.1:{broker}/ward?probs",
                 "--device-id", "e2e-dev", "--hop-s", "0.5", "--lookahead-s", "0", "--set", "events.on=0.0",
                 "--set", "events.off=0.0", "--set", "events.min_duration_s=0.1", "--status-interval", "0"],
                stdin=False, stdout="null") as d:
        d.wait_ready()
        t = np.arange(rec.n_samples) / rec.rate_hz
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.sendto(b"\xff\xfe not utf8", ("127.0.0.1", udp_port))
            out.sendto(b"hello world", ("127.0.0.1", udp_port))
            for i in range(0, rec.n_samples, 8):  # 8 samples per datagram, a sensor sending 8x faster than real time
                text = "\n".join(f"{t[j]:.6f},{a:.5f},{b:.5f},{c:.5f}" for j, (a, b, c) in
                                 enumerate(rec.acc[i:i + 8], start=i))
                out.sendto(text.encode(), ("127.0.0.1", udp_port))
                time.sleep(1 / 64)

        def probs_received() -> int:
            with lock:
                return sum(len(m["p"]) for m in received if m["type"] == "probs")
        wait_until(lambda: probs_received() >= rec.n_samples - 64, timeout=15, what="the probabilities over MQTT")
        done = d.stop(signal.SIGTERM)
    assert done.returncode == 0, done.stderr
    counters = done.counters
    # drained: every sample decided and published before the daemon exits; wait for the last messages to arrive
    wait_until(lambda: probs_received() >= counters["accepted"], timeout=15, what="the drained probabilities")
    sub.loop_stop()
    sub.disconnect()
    assert counters["balanced"]
    assert counters["dropped"].get("encoding") == 1 and counters["dropped"].get("columns") == 1
    assert counters["accepted"] + counters["dropped"].get("overflow", 0) == rec.n_samples
    with lock:
        probs = [m for m in received if m["type"] == "probs"]
        kinds = {m["type"] for m in received}
    assert sum(len(m["p"]) for m in probs) == counters["accepted"]   # drained: every sample decided and published
    assert {"onset", "event"} <= kinds
