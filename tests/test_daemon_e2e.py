"""End to end on loopback: samples in over UDP (with garbage and a burst), events and probabilities out over MQTT
through a real mosquitto broker started by the test. Bounded: every wait has a deadline, the daemon is stopped."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_bundle import make_bundle
from tests.test_stream import walking_recording

REPO = Path(__file__).resolve().parents[1]


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


@pytest.fixture
def broker(tmp_path):
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto); the MQTT end-to-end test needs it")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("mosquitto did not start listening within 10 s")
    yield port
    proc.terminate()
    proc.wait(timeout=5)


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
    proc = subprocess.Popen([sys.executable, "-m", "deploy", str(bundle), "--udp-port", str(udp_port),
                             "--sink", f"mqtt://127.0.0.1:{broker}/ward?probs", "--device-id", "e2e-dev",
                             "--hop-s", "0.5",
                             "--lookahead-s", "0", "--set", "events.on=0.0", "--set", "events.off=0.0",
                             "--set", "events.min_duration_s=0.1", "--status-interval", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        stderr_lines = []
        while time.monotonic() < deadline:  # wait for "ready" on the structured log
            line = proc.stderr.readline()
            stderr_lines.append(line)
            if "fog-daemon ready" in line or not line:
                break
        assert any("fog-daemon ready" in l for l in stderr_lines), "".join(stderr_lines)
        rec = walking_recording(12.0)
        t = np.arange(rec.n_samples) / rec.rate_hz
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.sendto(b"\xff\xfe not utf8", ("127.0.0.1", udp_port))
            out.sendto(b"hello world", ("127.0.0.1", udp_port))
            for i in range(0, rec.n_samples, 8):  # 8 samples per datagram, a burst 8x faster than real time
                text = "\n".join(f"{t[j]:.6f},{a:.5f},{b:.5f},{c:.5f}" for j, (a, b, c) in
                                 enumerate(rec.acc[i:i + 8], start=i))
                out.sendto(text.encode(), ("127.0.0.1", udp_port))
                time.sleep(1 / 64)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with lock:
                n_probs = sum(len(m["p"]) for m in received if m["type"] == "probs")
            if n_probs >= rec.n_samples - 64:
                break
            time.sleep(0.1)
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.3)
    sub.loop_stop()
    sub.disconnect()
    assert proc.returncode == 0, stderr
    counters = json.loads([l for l in stderr.splitlines() if l.startswith('{"counters"')][-1])["counters"]
    assert counters["balanced"]
    assert counters["dropped"].get("encoding") == 1 and counters["dropped"].get("columns") == 1
    assert counters["accepted"] + counters["dropped"].get("overflow", 0) == rec.n_samples
    with lock:
        probs = [m for m in received if m["type"] == "probs"]
        kinds = {m["type"] for m in received}
    assert sum(len(m["p"]) for m in probs) == counters["accepted"]   # drained: every sample decided and published
    assert {"onset", "event"} <= kinds
    event = next(m for m in received if m["type"] == "event")
    assert set(event) >= {"class", "onset_s", "offset_s", "detect_s", "decided_s", "peak"}
