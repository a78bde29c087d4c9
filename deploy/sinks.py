"""Sinks: where events (always) and per-hop probabilities (optionally) go. One JSON object per message.

Messages:
  {"type": "onset", "class": "Turn", "onset_s": 12.3, "offset_s": null, "detect_s": 12.9, "decided_s": 13.4,
   "peak": 0.91, "wall_time": 1767225600.1}          a confirmed freeze, still going (cue now)
  {"type": "event", ... "offset_s": 15.0 ...}          the finished episode (+ "reason" when it was cut short by a
                                                       stop or a gap: offset_s is then where the data stopped)
  {"type": "probs", "t0_s": 12.0, "rate_hz": 64, "classes": [...], "p": [[...], ...]}   decided samples of a hop
Times are the sensor's clock (seconds). `detect_s` is the sample at which the detector confirmed the episode
(as offline); `decided_s` the newest sample the daemon had when it said so (includes the look-ahead wait).

A sink that fails (broker down, disk full, closed stdout) never stops the daemon: each message it could not deliver
is counted per sink (`sink_failures` in the counters, under the sink's `label`) and logged once in a while. A sink
whose peer is down at start (the MQTT broker) does not stop the start either: it connects in the background and
buffers up to `max_queued` messages; beyond that each message is counted as a failure (memory stays bounded).
A UDP sink's host must resolve at start.
"""
from __future__ import annotations

import errno
import json
import logging
import socket
import sys
import time

from deploy import mqtt_options
from deploy.errors import FogError
from deploy.lazy import lazy_import, require

mqtt = lazy_import("paho.mqtt.client", "mqtt", "the MQTT sink", package="paho-mqtt")

log = logging.getLogger("deploy.sinks")


def event_message(kind: str, event, decided_s: float) -> dict:
    """An onset or event message; an episode cut short by the end of the data (a stop, a gap) says why (`reason`):
    its `offset_s` is where the data stopped, not where the freeze ended."""
    message = {"type": kind, "class": event.cls, "onset_s": round(event.onset_s, 4),
               "offset_s": None if event.offset_s is None else round(event.offset_s, 4),
               "detect_s": round(event.detect_s, 4), "decided_s": round(decided_s, 4),
               "peak": round(float(event.peak), 4), "wall_time": round(time.time(), 3)}
    if getattr(event, "cut", None):
        message["reason"] = event.cut
    return message


def probs_message(t0_s: float, probs, rate_hz: float, classes) -> dict:
    return {"type": "probs", "t0_s": round(t0_s, 6), "rate_hz": rate_hz, "classes": list(classes),
            "p": [[round(float(v), 4) for v in row] for row in probs]}


class Sink:
    name = "sink"

    def __init__(self, probs: bool = False):
        self.want_probs = bool(probs)
        self.failures = 0

    @property
    def label(self) -> str:
        return self.name

    def send(self, message: dict) -> None:
        if message["type"] == "probs" and not self.want_probs:
            return
        try:
            self._send(json.dumps(message, separators=(",", ":")), message["type"])
        except Exception as exc:  # a sink must never take the daemon down
            self._failed(exc)

    def _failed(self, exc) -> None:
        """One message not delivered: counted, and logged the 1st, 10th, 100th and every 1000th time."""
        self.failures += 1
        if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
            log.warning("sink %s failed %d time(s): %s", self.label, self.failures, exc)

    def _send(self, text: str, kind: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        """SIGHUP: reopen what can be reopened (a rotated log file); nothing for most sinks."""


class JsonLinesSink(Sink):
    """JSON lines to stdout (`path` "-") or appended to a file, flushed per message."""
    name = "jsonl"

    def __init__(self, path="-", probs=False):
        super().__init__(probs)
        self.path = path
        self.fh = sys.stdout if path in ("-", None) else self._open()

    @property
    def label(self) -> str:
        return f"jsonl:{self.path}"

    def _open(self):
        try:
            return open(self.path, "a", buffering=1)
        except OSError as exc:
            raise FogError(f"cannot open sink file {self.path} ({exc.strerror}); check the directory exists and is "
                           "writable") from None

    def _send(self, text, kind):
        self.fh.write(text + "\n")
        self.fh.flush()

    def reopen(self):
        if self.fh is not sys.stdout:
            self.close()
            try:
                self.fh = self._open()
            except FogError as exc:
                log.error("sink %s: %s", self.label, exc)

    def close(self):
        try:
            self.fh.flush() if self.fh is sys.stdout else self.fh.close()
        except (OSError, ValueError):   # disk full, closed pipe: already counted per message
            pass


class UdpSink(Sink):
    """One JSON message per datagram to host:port, on a connected socket: the peer's "port unreachable" (ICMP) comes
    back as ECONNREFUSED on the next send (or at close), and each is counted as the message it refused; that message's
    successor is then sent again. A peer that drops datagrams silently (a firewall, a host that is down) cannot be
    seen over UDP: use MQTT (QoS 1) when delivery must be known."""
    name = "udp"

    def __init__(self, host="127.0.0.1", port=5006, probs=False):
        super().__init__(probs)
        try:
            info = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError, OverflowError) as exc:
            raise FogError(f"UDP sink udp://{host}:{port}: the address does not resolve ({exc}); give a reachable "
                           "HOST:PORT") from None
        self.addr = info[0][4]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.connect(self.addr)   # no packet is sent: the kernel only fixes the peer and its route
        except OSError as exc:
            raise FogError(f"UDP sink udp://{host}:{port}: no route to it ({exc.strerror}); give a reachable "
                           "HOST:PORT") from None

    @property
    def label(self) -> str:
        return f"udp:{self.addr[0]}:{self.addr[1]}"

    def _send(self, text, kind):
        data = text.encode()
        try:
            self.sock.send(data)
        except ConnectionRefusedError as exc:   # the previous datagram was refused; this one was not sent yet
            self._failed(exc)
            self.sock.send(data)

    def close(self, wait_s: float = 0.05):
        """The last datagram's refusal, if any, arrives after it: wait a moment for it, then close."""
        time.sleep(wait_s)
        if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED:
            self._failed("the last message was refused (port unreachable)")
        self.sock.close()


class MqttSink(Sink):
    """Publish to `{topic}/{device_id}/events` (QoS 1) and `.../probs` (QoS 0) on an MQTT broker (paho-mqtt >= 2),
    with a retained availability topic `.../status` (deploy.mqtt_options: URL, credentials, TLS, last will).
    A message that names a wearer (the gateway's: `device`) goes to that wearer's topics instead,
    `{topic}/<device>/events` and `.../probs`; a `wearer` message (one joined or left) sets `{topic}/<device>/status`
    ("online"/"offline", retained).

    paho's outgoing queue is capped (`max_queued`), so a broker that goes away cannot make memory grow."""
    name = "mqtt"
    MAX_TOPIC_SETS = 100_000   # wearers' topics kept (the gateway's max_wearers is far below)

    def __init__(self, host="127.0.0.1", port=None, topic="fog", probs=False, device_id=None, client_id=None,
                 username=None, password=None, password_file=None, tls=False, ca_file=None, cert_file=None,
                 key_file=None, keepalive=30, max_queued=1000, connect_timeout_s=5.0, reconnect_max_s=30):
        super().__init__(probs)
        require(mqtt)
        port = int(port or mqtt_options.DEFAULT_PORT["mqtts" if tls else "mqtt"])
        mqtt_options.check_tls_files(tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        self.device_id = mqtt_options.device_id(device_id)
        self.topics = mqtt_options.topics(topic, self.device_id)
        self.prefix, self._wearer_topics, self._current, self._state = topic, {}, self.topics, None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or mqtt_options.client_id(self.device_id))
        mqtt_options.configure_client(self.client, status_topic=self.topics["status"], username=username,
                                      password=mqtt_options.read_password(password, password_file), tls=tls,
                                      ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(1, max(1, int(reconnect_max_s)))
        self.where = f"{host}:{port}/{topic.strip('/')}/{self.device_id}"   # no credentials: it is logged
        self.unacked: set[int] = set()   # QoS 1 events the broker has not acknowledged yet
        self.client.on_publish = lambda client, userdata, mid, *rest: self.unacked.discard(mid)
        self.client.on_connect = self._announce_online
        self.tls = dict(tls=tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        self._connect(host, port, keepalive, connect_timeout_s, max_queued)

    def _connect(self, host, port, keepalive, timeout_s, max_queued):
        """In the background: a broker down at start never stops the daemon; paho retries and queues meanwhile."""
        self.client.connect_async(host, port, keepalive)
        self.client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.client.is_connected():
            problem = mqtt_options.connection_problem(host, port, timeout_s=max(1.0, timeout_s), **self.tls)
            log.warning("MQTT broker %s not connected yet%s; messages are queued (up to %d) while it retries",
                        self.where, f": {problem}" if problem else "", max_queued)

    @property
    def label(self) -> str:
        return f"mqtt:{self.where}"

    def _announce_online(self, client, userdata, flags, reason_code, properties=None):
        if not reason_code.is_failure:
            client.publish(self.topics["status"], mqtt_options.ONLINE, qos=1, retain=True)
        else:   # refused (bad credentials, not authorised): said, and paho keeps retrying
            log.error("MQTT broker %s refused the connection: %s", self.where, reason_code)

    def send(self, message: dict) -> None:
        device = message.get("device")
        self._current = self.topics if not device else self._wearer_topics.get(device) or self._remember(device)
        if message["type"] == "wearer":   # who is connected: the wearer's retained availability
            self._state = mqtt_options.ONLINE if message["state"] == "online" else mqtt_options.OFFLINE
        super().send(message)

    def _remember(self, device: str) -> dict:
        if len(self._wearer_topics) >= self.MAX_TOPIC_SETS:
            self._wearer_topics.clear()
        topics = self._wearer_topics[device] = mqtt_options.topics(self.prefix, device)
        return topics

    def _send(self, text, kind):
        if kind == "wearer":
            self.client.publish(self._current["status"], self._state, qos=1, retain=True)
            return
        sub, qos = ("probs", 0) if kind == "probs" else ("events", 1)
        info = self.client.publish(self._current[sub], text, qos=qos)
        if qos == 1 and info.rc in (0, mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.unacked.add(info.mid)
        if info.rc == 0 or (qos == 1 and info.rc == mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN):
            return   # sent, or an event kept in paho's bounded queue until the broker is back
        raise FogError(f"publish failed (paho rc {info.rc}: {'queue full' if qos else 'not connected'})")

    def close(self, timeout_s: float = 2.0):
        """Wait (bounded) for the broker to acknowledge every event, say "offline" (retained) and disconnect (the
        broker then drops the last will); events never acknowledged are counted as failures."""
        try:
            deadline = time.monotonic() + timeout_s
            offline = self.client.publish(self.topics["status"], mqtt_options.OFFLINE, qos=1, retain=True)
            # rc 0: sent on a live connection, wait for its acknowledgement (else paho only queued it)
            while (self.unacked or self.client.want_write() or (offline.rc == 0 and not offline.is_published())) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        if self.unacked:
            self.failures += len(self.unacked)
            log.warning("sink %s: %d event(s) never acknowledged by the broker at exit", self.label,
                        len(self.unacked))


SINKS = {"jsonl": JsonLinesSink, "udp": UdpSink, "mqtt": MqttSink}


def open_sink(kind: str, **options) -> Sink:
    if kind not in SINKS:
        raise FogError(f"unknown sink {kind!r}; choose one of {sorted(SINKS)}")
    return SINKS[kind](**options)
