"""What a hub sends the gateway (deploy.wearer_formats), the per-wearer inbox budget (deploy.inbox), the bounded
metrics labels (deploy.wearers, deploy.gateway_metrics)."""
from __future__ import annotations

import queue
import struct
import time

import numpy as np
import pytest

from deploy.inbox import WearerInbox
from deploy.sources import Chunk
from deploy.wearer_formats import (MAX_FRAME_SAMPLES, UNATTRIBUTED, is_binary, pack_frame, parse_datagram,
                                   parse_frames, parse_tagged_lines)
from deploy.wearers import OTHER, WearerTable


def test_tagged_lines_are_grouped_by_wearer_and_bad_ones_counted_under_it():
    text = ("bed1,0.000,-0.98,0.05,0.11\nbed2,0.0,1,2,3\n# comment\n\nbed1,0.015625 -0.97 0.04 0.12\n"
            "bed1,0.03,x,1,2\nbed2,1,2,3\n,1,2,3,4\n   \nbed/3,1,2,3,4\n")
    chunks = parse_datagram(text.encode())
    assert set(chunks) == {"bed1", "bed2", UNATTRIBUTED}
    assert chunks["bed1"].t.tolist() == [0.0, 0.015625] and chunks["bed1"].acc[1].tolist() == [-0.97, 0.04, 0.12]
    assert chunks["bed1"].rejected == {"parse": 1} and chunks["bed2"].rejected == {"columns": 1}
    assert chunks[UNATTRIBUTED].rejected == {"device": 2} and chunks[UNATTRIBUTED].received == 2
    undecodable = parse_datagram(b"\xff\xfe")
    assert list(undecodable) == [UNATTRIBUTED] and undecodable[UNATTRIBUTED].rejected == {"encoding": 1}


def test_binary_frames_round_trip_and_carry_several_wearers():
    t = 100.0 + np.arange(40) / 64
    acc = np.random.default_rng(0).normal(size=(40, 3))
    data = pack_frame("ward3-bed12", t, acc) + pack_frame("bed2", t[:5], acc[:5])
    assert is_binary(data) and len(data) == (6 + 11 + 20 * 40) + (6 + 4 + 20 * 5)   # the documented layout
    assert data[:3] == b"FG\x01" and data[3] == 11 and struct.unpack_from("<H", data, 4 + 11) == (40,)
    chunks = parse_datagram(data)
    assert np.array_equal(chunks["ward3-bed12"].t, t)                       # float64 times, exact
    assert np.array_equal(chunks["ward3-bed12"].acc, acc.astype(np.float32).astype(np.float64))
    assert len(chunks["bed2"].t) == 5 and not chunks["bed2"].rejected
    with pytest.raises(ValueError):
        pack_frame("bad id", t, acc)
    with pytest.raises(ValueError):
        pack_frame("b", np.zeros(MAX_FRAME_SAMPLES + 1), np.zeros((MAX_FRAME_SAMPLES + 1, 3)))


def test_a_broken_frame_is_rejected_whole_and_counted_where_it_can_be():
    good = pack_frame("bed1", np.arange(10) / 64, np.zeros((10, 3)))
    truncated = pack_frame("bed2", np.arange(10) / 64, np.zeros((10, 3)))[:-7]
    chunks = parse_frames(good + truncated)
    assert len(chunks["bed1"].t) == 10
    assert chunks["bed2"].rejected == {"binary": 9} and len(chunks["bed2"].t) == 0   # what the bytes held
    future = b"FG\x02" + good[3:]                        # a version this gateway does not know
    assert is_binary(future) and parse_datagram(future)[UNATTRIBUTED].rejected == {"binary": 1}
    assert not is_binary(b"FG01,0.0,1,2,3\n")            # a text line of a wearer named FG01
    assert set(parse_datagram(b"FG01,0.0,1,2,3\n")) == {"FG01"}


def _chunk(device, n, t0=0.0):
    return Chunk(t0 + np.arange(n) / 64, np.zeros((n, 3)), time.monotonic(), device=device)


def test_the_inbox_keeps_a_budget_per_wearer():
    inbox = WearerInbox(64, queue_s=2.0, burst_s=1.0, tolerance=0.25, max_devices=2)
    for _ in range(3):                  # 48 samples: within the burst of 64
        inbox.put_nowait(_chunk("calm", 16))
    for _ in range(10):                 # 160 samples at once: beyond its 64-sample burst
        inbox.put_nowait(_chunk("flood", 16))
    inbox.put_nowait(_chunk("third", 16))   # a third wearer: beyond max_devices
    taken, markers = inbox.take(timeout=0)
    assert markers == [] and len(taken["calm"][0]) == 3 and not taken["calm"][1]
    assert len(taken["flood"][0]) == 4 and taken["flood"][1] == {"flood": 96}
    assert inbox.over_limit_taken() == {"third": 16}
    # the loop is behind: at most queue_s seconds of a wearer wait, the rest of a live wearer's chunks are counted
    slow = WearerInbox(64, queue_s=0.5, burst_s=100.0, max_devices=5)
    for _ in range(4):
        slow.put_nowait(_chunk("w", 16))
    taken, _ = slow.take(timeout=0)
    assert len(taken["w"][0]) == 2 and taken["w"][1] == {"overflow": 32}
    # a replay waits for room instead, and says so when it waited too long
    slow.put(_chunk("r", 32), timeout=0.01)
    with pytest.raises(queue.Full):
        slow.put(_chunk("r", 16), timeout=0.01)


def test_metrics_labels_are_bounded_and_never_shrink():
    table = WearerTable(lambda device, counters: None, lambda: None, label_cap=2)
    assert [table.label_of(d) for d in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]
    assert len(set(table.labels.values())) == 3      # cap + "other", however many wearers come


def test_open_onsets_are_kept_per_wearer(tmp_path):
    from deploy.onsets import OpenOnsets
    onsets = OpenOnsets(tmp_path / "open.json")
    for device in ("bed1", "bed2"):
        onsets.update("onset", {"device": device, "class": "Turn", "onset_s": 1.0, "detect_s": 1.5, "decided_s": 2.0})
    onsets.update("event", {"device": "bed1", "class": "Turn", "onset_s": 1.0, "detect_s": 1.5, "decided_s": 2.0})
    left = OpenOnsets(tmp_path / "open.json").leftover()       # the next start, after a SIGKILL
    assert [(m["device"], m["class"], m["type"]) for m in left] == [("bed2", "Turn", "aborted")]


def test_several_serial_ports_each_one_wearer():
    pytest.importorskip("serial")
    import os
    import threading
    from deploy.sources_multi import WearerSerialSource
    ends = [os.openpty() for _ in range(2)]        # (writer, the port the gateway opens) per wearer
    source = WearerSerialSource({os.ttyname(port): name for (_, port), name in zip(ends, ("bed1", "bed2"))})
    got, stop = [], threading.Event()
    thread = threading.Thread(target=source.run, args=(got.append, stop), daemon=True)
    thread.start()
    for (writer, _), name in zip(ends, ("bed1", "bed2")):
        os.write(writer, b"0.0,1,2,3\n0.015625,1,2,3\nnot a sample\n")
    deadline = time.monotonic() + 10
    while sum(c.received for c in got) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    by_wearer = {name: [c for c in got if c.device == name] for name in ("bed1", "bed2")}
    for chunks in by_wearer.values():
        assert sum(len(c.t) for c in chunks) == 2 and sum(c.rejected.get("columns", 0) for c in chunks) == 1
    for writer, port in ends:
        os.close(writer)
