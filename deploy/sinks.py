"""Sinks: where events (always) and per-hop probabilities (optionally) go. One JSON object per message.

Messages:
  {"type": "onset", "class": "Turn", "onset_s": 12.3, "offset_s": null, "detect_s": 12.9, "decided_s": 13.4,
   "peak": 0.91, "wall_time": 1767225600.1}          a confirmed freeze, still going (cue now)
  {"type": "event", ... "offset_s": 15.0 ...}          the finished episode
  {"type": "probs", "t0_s": 12.0, "rate_hz": 64, "classes": [...], "p": [[...], ...]}   decided samples of a hop
Times are the sensor's clock (seconds). `detect_s` is the sample at which the detector confirmed the episode
(as offline); `decided_s` the newest sample the daemon had when it said so (includes the look-ahead wait).

A sink that fails (broker down, disk full) never stops the daemon: the failure is counted and logged once in a while.
"""
from __future__ import annotations

import json
import logging
import socket
import sys
import time

from deploy.errors import FogError
from deploy.lazy import lazy_import, require

mqtt = lazy_import("paho.mqtt.client", "mqtt", "the MQTT sink", package="paho-mqtt")

log = logging.getLogger("deploy.sinks")


def event_message(kind: str, event, decided_s: float) -> dict:
    return {"type": kind, "class": event.cls, "onset_s": round(event.onset_s, 4),
            "offset_s": None if event.offset_s is None else round(event.offset_s, 4),
            "detect_s": round(event.detect_s, 4), "decided_s": round(decided_s, 4),
            "peak": round(float(event.peak), 4), "wall_time": round(time.time(), 3)}


def probs_message(t0_s: float, probs, rate_hz: float, classes) -> dict:
    return {"type": "probs", "t0_s": round(t0_s, 6), "rate_hz": rate_hz, "classes": list(classes),
            "p": [[round(float(v), 4) for v in row] for row in probs]}


class Sink:
    name = "sink"

    def __init__(self, probs: bool = False):
        self.want_probs = bool(probs)
        self.failures = 0

    def send(self, message: dict) -> None:
        if message["type"] == "probs" and not self.want_probs:
            return
        try:
            self._send(json.dumps(message, separators=(",", ":")), message["type"])
        except Exception as exc:  # a sink must never take the daemon down
            self.failures += 1
            if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                log.warning("sink %s failed %d time(s): %s", self.name, self.failures, exc)

    def _send(self, text: str, kind: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JsonLinesSink(Sink):
    """JSON lines to stdout (`path` "-") or appended to a file, flushed per message."""
    name = "jsonl"

    def __init__(self, path="-", probs=False):
        super().__init__(probs)
        self.path = path
        try:
            self.fh = sys.stdout if path in ("-", None) else open(path, "a", buffering=1)
        except OSError as exc:
            raise FogError(f"cannot open sink file {path} ({exc.strerror}); check the directory exists and is "
                           "writable") from None

    def _send(self, text, kind):
        self.fh.write(text + "\n")
        self.fh.flush()

    def close(self):
        if self.fh is not sys.stdout:
            self.fh.close()


class UdpSink(Sink):
    """One JSON message per datagram to host:port."""
    name = "udp"

    def __init__(self, host="127.0.0.1", port=5006, probs=False):
        super().__init__(probs)
        self.addr = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def _send(self, text, kind):
        self.sock.sendto(text.encode(), self.addr)

    def close(self):
        self.sock.close()


class MqttSink(Sink):
    """Publish to `{topic}/events` (QoS 1) and `{topic}/probs` (QoS 0) on an MQTT broker (paho-mqtt >= 2).

    paho's outgoing queue is capped (`max_queued`), so a broker that goes away cannot make memory grow."""
    name = "mqtt"

    def __init__(self, host="127.0.0.1", port=1883, topic="fog", probs=False, client_id=None, keepalive=30,
                 max_queued=1000, connect_timeout_s=5.0):
        super().__init__(probs)
        require(mqtt)
        self.topic = topic.rstrip("/")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"fog-daemon-{id(self)}")
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(1, 30)
        try:
            self.client.connect(host, int(port), keepalive)
        except OSError as exc:
            raise FogError(f"cannot reach the MQTT broker at {host}:{port} ({exc}); is it running?") from None
        self.client.loop_start()
        deadline = time.monotonic() + connect_timeout_s
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.client.is_connected():
            log.warning("MQTT broker %s:%s not connected yet; messages are queued (up to %d)", host, port, max_queued)

    def _send(self, text, kind):
        sub, qos = ("probs", 0) if kind == "probs" else ("events", 1)
        info = self.client.publish(f"{self.topic}/{sub}", text, qos=qos)
        if info.rc != 0:
            raise FogError(f"publish failed (paho rc {info.rc})")

    def close(self):
        try:
            deadline = time.monotonic() + 2.0
            while self.client.want_write() and time.monotonic() < deadline:
                time.sleep(0.02)
            self.client.disconnect()
        finally:
            self.client.loop_stop()


SINKS = {"jsonl": JsonLinesSink, "udp": UdpSink, "mqtt": MqttSink}


def open_sink(kind: str, **options) -> Sink:
    if kind not in SINKS:
        raise FogError(f"unknown sink {kind!r}; choose one of {sorted(SINKS)}")
    return SINKS[kind](**options)
