"""The gateway as users run it (`python -m deploy BUNDLE --gateway ...`, a real process): wearers over UDP in both
formats with /health, /ready, per-wearer metrics labels and status lines; a folder of replays whose every wearer's
events equal `fog-daemon --replay` of its file; MQTT in and out on a real broker."""
from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from deploy.recording import write_recording
from deploy.synth import synth_recording
from deploy.wearer_formats import pack_frame
from tests.daemon_harness import Broker, Daemon, free_port, mosquitto_binary, run_daemon, wait_until
from tests.helpers_bundle import make_bundle

pytest.importorskip("onnxruntime")

EVENTS = {"hop_s": 0.5, "lookahead_s": 1.0, "smoothing_s": 0.25, "on": 0.515, "off": 0.505, "min_duration_s": 0.5,
          "refractory_s": 0.5}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("gwp") / "b", batch=(1, 4, 8), exact_rows=True, gru=16,
                       events=EVENTS)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _lines(t, acc, device: str | None = None) -> str:
    """Samples as text lines, exactly (the shortest repr of each float64), tagged with `device` when given."""
    tag = f"{device}," if device else ""
    return "".join(f"{tag}{float(ti)!r},{float(a)!r},{float(b)!r},{float(c)!r}\n" for ti, (a, b, c) in zip(t, acc))


def _samples(seed: int, seconds: float):
    rec = synth_recording(minutes=seconds / 60, seed=seed, rate_hz=64)
    return np.arange(rec.n_samples) / 64.0, rec.acc


def test_wearers_over_udp_with_health_metrics_and_a_status_line_each(bundle, tmp_path):
    out, metrics = tmp_path / "events.jsonl", free_port()
    args = [bundle, "--gateway", "--udp-port", "0", "--sink", f"file:{out}", "--metrics-port", metrics,
            "--status-interval", "0.3", "--set", "gateway.burst_s=600", "--set", "gateway.metrics_wearers=2"]
    with Daemon(args, stdin=False) as d:
        ready = d.wait_ready()
        port = int(ready.split("source udp 127.0.0.1:")[1].split()[0])
        assert _get(metrics, "/ready")[0] == 200 and json.loads(_get(metrics, "/health")[1])["status"] == "ok"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        streams = {name: _samples(seed, 30) for seed, name in enumerate(("bed1", "bed2", "bed3"))}
        for i in range(0, len(streams["bed1"][0]), 8):
            t, acc = streams["bed1"]
            sock.sendto(pack_frame("bed1", t[i:i + 8], acc[i:i + 8]), ("127.0.0.1", port))
            for name in ("bed2", "bed3"):   # lines, two wearers in one datagram
                t, acc = streams[name]
                sock.sendto(_lines(t[i:i + 8], acc[i:i + 8], name).encode(), ("127.0.0.1", port))
            time.sleep(0.0005)
        sock.sendto(b"\x00garbage that names nobody", ("127.0.0.1", port))
        d.wait_for("status: wearer bed3:")
        wait_until(lambda: json.loads(_get(metrics, "/health")[1])["wearers"] == 3, what="three wearers connected")
        text = _get(metrics, "/metrics")[1]
        assert 'fog_samples_received_total{wearer="bed1"}' in text and 'wearer="other"' in text   # the cap is 2
        assert 'wearer="bed3"' not in text and 'fog_batches_total{size="8"}' in text
        done = d.stop(signal.SIGTERM)
    assert done.returncode == 0, done.stderr[-2000:]
    final = done.counters
    n = len(streams["bed1"][0])
    assert {w: c["accepted"] for w, c in final["wearers"].items()} == {"bed1": n, "bed2": n, "bed3": n}
    assert final["every_wearer_balanced"] and final["balanced"] and final["unattributed"] == {"device": 1}
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    joined = [m["device"] for m in messages if m["type"] == "wearer" and m["state"] == "online"]
    assert sorted(joined) == ["bed1", "bed2", "bed3"]
    assert all(m.get("device") in streams for m in messages)


def test_a_folder_of_replays_gives_each_wearer_its_own_daemon_s_events(bundle, tmp_path):
    folder = tmp_path / "ward"
    folder.mkdir()
    for k in range(4):
        write_recording(synth_recording(minutes=1.0 + 0.25 * k, seed=40 + k, rate_hz=64), folder / f"p{k}.npz",
                        "npz")
    out = tmp_path / "gateway.jsonl"
    done = run_daemon([bundle, "--gateway", "--replay", folder, "--sink", f"file:{out}?probs", "--threads", "1"],
                      timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    gateway = [json.loads(line) for line in out.read_text().splitlines()]
    events = 0
    for k in range(4):
        alone_out = tmp_path / f"alone{k}.jsonl"
        alone = run_daemon([bundle, "--replay", folder / f"p{k}.npz", "--sink", f"file:{alone_out}?probs",
                            "--threads", "1"], timeout=300)
        assert alone.returncode == 0, alone.stderr[-2000:]
        theirs = [{x: v for x, v in json.loads(line).items() if x != "wall_time"}
                  for line in alone_out.read_text().splitlines()]
        mine = [{x: v for x, v in m.items() if x not in ("wall_time", "device")} for m in gateway
                if m.get("device") == f"p{k}" and m["type"] != "wearer"]
        assert mine == theirs, k
        events += sum(m["type"] == "event" for m in theirs)
    assert events >= 2


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_mqtt_in_and_per_wearer_topics_out(bundle, tmp_path):
    mqtt = pytest.importorskip("paho.mqtt.client")
    broker = Broker(tmp_path).start()
    got: dict[str, list] = {}
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, m: got.setdefault(m.topic, []).append(m.payload.decode(errors="replace"))
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe("ward/#", qos=1)
    listener.loop_start()
    url = f"mqtt://127.0.0.1:{broker.port}/ward"
    try:
        with Daemon([bundle, "--gateway", "--mqtt-in", url, "--sink", url, "--set", "gateway.burst_s=600"],
                    stdin=False) as d:
            d.wait_ready()
            sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            sender.connect("127.0.0.1", broker.port)
            sender.loop_start()
            time.sleep(0.5)   # the gateway subscribes once connected
            t, acc = _samples(5, 20)
            for i in range(0, len(t), 16):
                sender.publish("ward/bed7/acc", _lines(t[i:i + 16], acc[i:i + 16]), qos=1).wait_for_publish(5)
            sender.publish("ward/bed8/acc", pack_frame("bed8", t[:64], acc[:64]), qos=1).wait_for_publish(5)
            wait_until(lambda: "ward/bed8/status" in got and "ward/bed7/status" in got, what="both wearers online")
            done = d.stop(signal.SIGTERM)
            sender.loop_stop()
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.counters["wearers"]["bed7"]["accepted"] == len(t)
        assert done.counters["wearers"]["bed8"]["accepted"] == 64
        wait_until(lambda: got.get("ward/bed7/status", [])[-1:] == ["offline"], what="bed7 offline at the stop")
        assert got["ward/bed7/status"][0] == "online"
    finally:
        listener.loop_stop()
        broker.stop()
