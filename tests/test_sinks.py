"""Sinks: JSON lines and UDP carry the documented messages; a failing sink never raises."""
from __future__ import annotations

import json
import socket

import numpy as np

from deploy.events import Event
from deploy.sinks import JsonLinesSink, UdpSink, event_message, open_sink, probs_message


def test_jsonl_file_sink_writes_events_and_probs_only_when_asked(tmp_path):
    event = event_message("event", Event("Turn", 1.0, 3.5, 1.6, 0.93), decided_s=2.1)
    probs = probs_message(0.5, np.array([[0.1, 0.2, 0.3]], np.float32), 64.0, ["a", "b", "c"])
    quiet, loud = JsonLinesSink(tmp_path / "q.jsonl"), JsonLinesSink(tmp_path / "l.jsonl", probs=True)
    for sink in (quiet, loud):
        sink.send(event)
        sink.send(probs)
        sink.close()
    assert [json.loads(l)["type"] for l in (tmp_path / "q.jsonl").read_text().splitlines()] == ["event"]
    lines = [json.loads(l) for l in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert lines[0]["class"] == "Turn" and lines[0]["offset_s"] == 3.5 and lines[0]["decided_s"] == 2.1
    assert lines[1]["p"] == [[0.1, 0.2, 0.3]]


def test_udp_sink_sends_one_message_per_datagram():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(2)
        sink = open_sink("udp", host="127.0.0.1", port=rx.getsockname()[1])
        sink.send(event_message("onset", Event("Walking", 4.0, None, 4.5, 0.8), decided_s=5.0))
        message = json.loads(rx.recv(65535))
        sink.close()
    assert message["type"] == "onset" and message["offset_s"] is None


def test_a_failing_sink_is_counted_not_raised(tmp_path):
    sink = UdpSink(host="127.0.0.1", port=9)
    sink.sock.close()  # every send now fails
    for _ in range(3):
        sink.send(event_message("event", Event("Turn", 1.0, 2.0, 1.5, 0.9), decided_s=2.0))
    assert sink.failures == 3
