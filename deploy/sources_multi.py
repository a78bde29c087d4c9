"""The gateway's sources: each chunk carries the wearer it belongs to (`Chunk.device`).

- `udp`: one port for every wearer, datagrams of tagged lines or binary frames (deploy.wearer_formats); the wearer
  is the `device` field;
- `mqtt`: messages on `{topic}/<device>/acc` (paho-mqtt), lines `t,AccV,AccML,AccAP` or binary frames; the wearer is
  the topic level;
- `serial`: several serial ports (pyserial), lines `t,AccV,AccML,AccAP`; the wearer is the port's name (`ports`:
  path -> name);
- `replay`: a folder of recordings (any layout deploy.recording reads), one wearer each, named by the file's stem.

They run as the daemon's sources do (deploy.feed.Feed: a thread, `run(emit, stop)`, reconnects): `emit(chunk)` puts
a tagged chunk into the gateway's inbox (deploy.inbox), which keeps a budget per wearer.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from deploy.errors import FogError
from deploy.lazy import lazy_import, require
from deploy.sources import (POLL_S, Chunk, ReplaySource, SerialSource, SensorSource, UdpSource, parse_bytes,
                            pump_bytes)
from deploy.wearer_formats import UNATTRIBUTED, is_binary, parse_datagram, parse_frames, valid_device

mqtt = lazy_import("paho.mqtt.client", "mqtt", "the MQTT input", package="paho-mqtt")

log = logging.getLogger("deploy.sources_multi")

REPLAY_SUFFIXES = (".csv", ".npz", ".txt", ".xlsx")
_EMPTY_T, _EMPTY_ACC = np.empty(0), np.empty((0, 3))   # a chunk that carries only a count


def _tagged(chunks: dict, emit) -> None:
    for device, chunk in chunks.items():
        chunk.device = device
        if chunk.received:
            emit(chunk)


class WearerUdpSource(UdpSource):
    """One UDP port for every wearer: datagrams of `device,t,AccV,AccML,AccAP` lines or binary frames (the kernel's
    drops are counted as the daemon's UDP source counts them: they belong to no wearer it can name)."""

    def describe(self) -> str:
        return f"udp {self.host}:{self.port} (wearer-tagged lines or binary frames)"

    def _parse(self, data: bytes) -> list:
        chunks = parse_datagram(data)
        for device, chunk in chunks.items():
            chunk.device = device
        return list(chunks.values())


class WearerMqttSource(SensorSource):
    """Subscribes to `{topic}/+/acc`; the topic's middle level names the wearer. Payload: lines of
    `t,AccV,AccML,AccAP` or binary frames of that wearer (a frame naming another wearer is rejected, `device`)."""
    name = "mqtt"

    def __init__(self, host="127.0.0.1", port=None, topic="fog", username=None, password=None,
                 password_file=None, tls=False, ca_file=None, cert_file=None, key_file=None, client_id=None,
                 keepalive=30, qos=0, **kw):
        super().__init__(**kw)
        require(mqtt)
        from deploy import mqtt_options   # the sink's URL, credential and TLS rules
        mqtt_options.check_tls_files(tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        self.prefix, self.qos = topic.strip("/"), int(qos)
        self.host, self.port, self.keepalive = host, int(port or (8883 if tls else 1883)), int(keepalive)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"fog-gateway-in-{mqtt_options.device_id(None)}")
        mqtt_options.configure_client(self.client, status_topic=f"{self.prefix}/gateway-input/status",
                                      username=username,
                                      password=mqtt_options.read_password(password, password_file), tls=tls,
                                      ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        self.client.will_clear()   # an input connection announces nothing
        self.emit = None

    def describe(self) -> str:
        return f"mqtt {self.host}:{self.port} {self.prefix}/+/acc"

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.error("MQTT input %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        client.subscribe(f"{self.prefix}/+/acc", qos=self.qos)

    def _on_message(self, client, userdata, message):
        levels = message.topic.split("/")
        device = levels[-2] if len(levels) >= 2 and valid_device(levels[-2]) else UNATTRIBUTED
        payload = bytes(message.payload)
        if is_binary(payload):
            chunks = parse_frames(payload)
            foreign = sum(c.received for d, c in chunks.items() if d != device)
            chunk = chunks.get(device) or Chunk(_EMPTY_T, _EMPTY_ACC, time.monotonic(), {})
            if foreign:
                chunk.rejected["device"] = chunk.rejected.get("device", 0) + foreign
        else:
            chunk = parse_bytes(payload)
        _tagged({device: chunk}, self.emit)

    def run(self, emit, stop) -> None:
        self.emit = emit
        self.client.on_connect, self.client.on_message = self._on_connect, self._on_message
        self.client.connect_async(self.host, self.port, self.keepalive)
        self.client.loop_start()
        try:
            while not stop.wait(POLL_S):
                pass
        finally:
            self.client.disconnect()
            self.client.loop_stop()


class WearerSerialSource(SensorSource):
    """Several serial ports, one wearer each (`ports`: {path: wearer name}); each port on its own thread."""
    name = "serial"

    def __init__(self, ports: dict, baud=115200, **kw):
        super().__init__(**kw)
        if not ports:
            raise FogError("source serial for the gateway needs ports: {\"/dev/ttyUSB0\" = \"bed1\", ...}")
        bad = [name for name in ports.values() if not valid_device(str(name))]
        if bad:
            raise FogError(f"serial port names {bad}: a wearer's name has 1-64 characters, no whitespace, ',', '/', "
                           "'+' or '#'")
        self.ports = {path: (str(name), SerialSource(device=path, baud=baud)) for path, name in ports.items()}

    def describe(self) -> str:
        return "serial " + ", ".join(f"{path}={name}" for path, (name, _) in self.ports.items())

    def run(self, emit, stop) -> None:
        _run_all(list(self.ports.values()), stop, self._pump, emit)

    @staticmethod
    def _pump(name, port, emit, stop) -> None:
        pump_bytes(port.port.readline, _tagging(name, emit), stop, port.port.close, split=False)


class ReplayFolderSource(SensorSource):
    """A folder of recordings, one wearer each (named by the file's stem), replayed side by side."""
    name = "replay"
    live = False

    def __init__(self, path, layout=None, realtime=False, speed=1.0, chunk_s=None, **kw):
        folder = Path(path)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in REPLAY_SUFFIXES) if folder.is_dir() \
            else []
        if not files:
            raise FogError(f"{folder}: no recordings ({', '.join(REPLAY_SUFFIXES)}) in this folder; the gateway "
                           "replays a folder, one recording per wearer")
        names = [p.stem for p in files]
        bad = [n for n in names if not valid_device(n)]
        if bad or len(set(names)) != len(names):
            raise FogError(f"{folder}: each file's stem names a wearer, so stems must be distinct names without "
                           f"spaces, ',', '/', '+' or '#' (offending: {bad or sorted(names)})")
        self.replays = {p.stem: ReplaySource(str(p), layout=layout, realtime=realtime, speed=speed, chunk_s=chunk_s)
                        for p in files}
        first = next(iter(self.replays.values()))
        super().__init__(units=first.units, rate_hz=first.rate_hz)
        self.path = folder

    def describe(self) -> str:
        return f"replay folder {self.path} ({len(self.replays)} wearers)"

    def run(self, emit, stop) -> None:
        _run_all(list(self.replays.items()), stop, self._one, emit)

    @staticmethod
    def _one(name, replay, emit, stop) -> None:
        replay.run(_tagging(name, emit), stop)


def _tagging(name: str, emit):
    """`emit` for one wearer's source: each chunk is tagged with the wearer's name first."""
    def tagged(chunk):
        chunk.device = name
        emit(chunk)
    return tagged


def _run_all(items, stop, target, emit) -> None:
    """`target(name, obj, emit, stop)` for every item on its own thread; returns when all have returned (the first
    failure is raised then, the others were told to stop)."""
    failures = []
    local_stop = threading.Event()

    def guarded(name, obj):
        try:
            target(name, obj, emit, local_stop)
        except Exception as exc:   # one port failing ends the source: the feed reopens or fails it
            failures.append(exc)
            local_stop.set()

    threads = [threading.Thread(target=guarded, args=item, name=f"source-{item[0]}", daemon=True) for item in items]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        if stop.wait(POLL_S):
            local_stop.set()
    if failures:
        raise failures[0]


SOURCES = {"udp": WearerUdpSource, "mqtt": WearerMqttSource, "serial": WearerSerialSource,
           "replay": ReplayFolderSource}


def open_wearer_source(kind: str, **options) -> SensorSource:
    if kind not in SOURCES:
        raise FogError(f"the gateway reads {', '.join(sorted(SOURCES))}, not {kind!r}")
    return SOURCES[kind](**options)
