"""Many wearers through one gateway (deploy.gateway): each wearer's events and probabilities are those of a
single-wearer daemon fed the same chunks, bit for bit, whoever else is connected and whatever they send (garbage,
the wrong rate, silence, a restarted sensor); every wearer's counters balance and every skipped hop is counted.

The gateway is driven in-process, turn by turn as its loop does (take in, then run the due windows together), so the
test is deterministic; tests/test_gateway_process.py runs the real process over UDP and a replay folder."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter

import numpy as np
import pytest

from deploy import daemon, gateway
from deploy.config import build_config
from deploy.sources import Chunk
from deploy.synth import synth_recording
from tests.helpers_bundle import make_bundle

pytest.importorskip("onnxruntime")

# untrained stand-in: its probabilities sit near 0.5, so thresholds there make events happen
EVENTS = {"hop_s": 0.5, "lookahead_s": 1.0, "smoothing_s": 0.25, "on": 0.515, "off": 0.505, "min_duration_s": 0.5,
          "refractory_s": 0.5}
RATE = 64.0
CHUNK = 16     # samples a chunk: a quarter second, as a sensor hub sends them
SILENT = "the wearer's sensor was silent for more than 2 s (gateway.wearer_timeout_s)"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("gw") / "b", batch=(1, 4, 8), exact_rows=True, gru=16,
                       events=EVENTS)


def chunks_of(seed: int, seconds: float, t0: float = 0.0, rate: float = RATE) -> list[Chunk]:
    rec = synth_recording(minutes=seconds / 60, seed=seed, rate_hz=RATE)
    t = t0 + np.arange(rec.n_samples) / rate
    return [Chunk(t[i:i + CHUNK].copy(), rec.acc[i:i + CHUNK].copy()) for i in range(0, rec.n_samples, CHUNK)]


def config_for(bundle, out, **gateway_keys) -> dict:
    return build_config(None, [{"bundle": str(bundle), "backend": "onnxruntime", "threads": 1,
                                "source": {"kind": "udp", "port": 0} if gateway_keys else {"kind": "stdin"},
                                "gateway": {"enabled": bool(gateway_keys), **gateway_keys},
                                "sinks": [{"kind": "jsonl", "path": str(out), "probs": True}],
                                "log": {"status_interval_s": 0}}])


def messages(path, device=None) -> list[dict]:
    """The sink's messages (of one wearer), without what differs by design (wall time, the device field)."""
    out = []
    for line in path.read_text().splitlines():
        m = json.loads(line)
        if m["type"] != "wearer" and (device is None or m.get("device") == device):
            out.append({k: v for k, v in m.items() if k not in ("wall_time", "device")})
    return out


def single_daemon(bundle, chunks, out, reason: str = "the daemon was stopped") -> dict:
    """The single-wearer daemon's own code (deploy.daemon: wire, _process, drain) fed `chunks`; `reason`: why its
    stream ended (what an episode still going then says)."""
    w = daemon.wire(config_for(bundle, out))
    stop = threading.Event()
    for chunk in chunks:
        daemon._process(Chunk(chunk.t.copy(), chunk.acc.copy(), time.monotonic(), dict(chunk.rejected)), w, stop)
    return daemon.drain(w, stop, reason)


def run_gateway(bundle, streams: dict, out, leave_after: dict | None = None, timeout_s: float = 30.0) -> dict:
    """Every wearer's chunks through one gateway, a chunk of each per turn; `leave_after`: {device: turn} after
    which that wearer is silent and the gateway's timeout sends it away."""
    gw = gateway.wire(config_for(bundle, out, wearer_timeout_s=timeout_s))
    try:
        turns = max(len(c) for c in streams.values())
        clock = time.monotonic()
        for turn in range(turns):
            clock += 0.25
            for device, chunks in streams.items():
                if turn < len(chunks):
                    chunk = chunks[turn]
                    fresh = Chunk(chunk.t.copy(), chunk.acc.copy(), time.monotonic(), dict(chunk.rejected))
                    gw.take_in(device, [fresh], Counter(), clock)
            gw.batcher.run()
            for device, last in (leave_after or {}).items():
                if turn == last + int(timeout_s / 0.25) + 4:
                    assert [w.device for w in gw.table.expire(clock)] == [device]
        return gateway.drain(gw, threading.Event())
    finally:
        gw.source.sock.close()


def test_a_wearer_s_output_is_its_own_daemon_s_whoever_else_is_connected(bundle, tmp_path):
    good = {f"w{k}": chunks_of(200 + k, 60 + 15 * k) for k in range(3)}
    # misbehaving wearers beside them
    garbage = [Chunk(np.empty(0), np.empty((0, 3)), rejected={"parse": 3, "columns": 2}) for _ in range(40)]
    nan = chunks_of(300, 60)
    for chunk in nan[::3]:
        chunk.acc[::2] = np.nan
    wrong_rate = chunks_of(301, 30, rate=100.0)                 # timestamps of a 100 Hz sensor, said to be 64 Hz
    restarted = chunks_of(302, 30) + chunks_of(303, 40, t0=0.5)  # its clock starts again at 0.5 s
    silent = chunks_of(304, 25)                                  # stops after 25 s: the timeout sends it away
    streams = {**good, "garbage": garbage, "nan": nan, "wrong-rate": wrong_rate, "restarted": restarted,
               "silent": silent}
    final = run_gateway(bundle, streams, tmp_path / "gateway.jsonl", leave_after={"silent": len(silent) - 1},
                        timeout_s=2.0)
    assert final["batches"].get(4, 0) + final["batches"].get(8, 0) > 0, final["batches"]   # it did batch
    compared = 0
    for device in ("w0", "w1", "w2", "nan", "restarted", "silent"):
        alone = single_daemon(bundle, streams[device], tmp_path / f"{device}.jsonl",
                              SILENT if device == "silent" else "the daemon was stopped")
        mine, theirs = messages(tmp_path / "gateway.jsonl", device), messages(tmp_path / f"{device}.jsonl")
        assert mine == theirs, device
        compared += sum(m["type"] in ("onset", "event") for m in theirs)
        counts = final["wearers"][device]
        for key in ("received", "accepted", "dropped", "hops_run", "events", "clock_resets", "resets"):
            assert counts[key] == alone[key], (device, key)
    assert compared >= 6, "the comparison must cover events, not only probabilities"
    # what each misbehaving wearer did is counted under its own name, and only there
    w = final["wearers"]
    assert final["unattributed"] == {"parse": 120, "columns": 80}    # "garbage" never sent a sample: no wearer
    assert "garbage" not in w and w["nan"]["dropped"]["non_finite"] > 0
    assert w["wrong-rate"]["dropped"]["rate_mismatch"] > 0 and w["wrong-rate"]["rate_mismatches"] >= 1
    assert w["restarted"]["clock_resets"] == 1 and w["restarted"]["dropped"] == {"out_of_order": 1}   # intake's rule
    assert all(not w[d]["dropped"] for d in ("w0", "w1", "w2", "silent"))
    assert final["wearers_left"] == len(w) and final["every_wearer_balanced"] and final["balanced"]
    assert final["received"] == sum(c["received"] for c in w.values()) + 200


def test_a_wearer_that_is_behind_skips_whole_hops_and_counts_them(bundle, tmp_path):
    gw = gateway.wire(config_for(bundle, tmp_path / "out.jsonl", wearer_timeout_s=30.0))
    try:
        now = time.monotonic()
        for device, late in (("late", 5.0), ("fresh", 0.0)):
            for chunk in chunks_of(7, 20):
                chunk.arrival = time.monotonic() - late      # waited longer than stream.max_behind_s (1 s)
                gw.take_in(device, [chunk], Counter(), now)
            gw.batcher.run()
        final = gateway.drain(gw, threading.Event())
    finally:
        gw.source.sock.close()
    late, fresh = final["wearers"]["late"], final["wearers"]["fresh"]
    hops = len(chunks_of(7, 20)) * CHUNK // 32              # a hop is 32 samples at 64 Hz
    assert hops == 40 and late["hops_skipped_behind"] == hops and late["hops_run"] == 0
    assert fresh["hops_skipped_behind"] == 0 and fresh["hops_run"] == hops
    assert final["hops_skipped_behind"] == hops and late["balanced"] and fresh["balanced"]


def test_wearers_beyond_the_limit_are_counted_not_lost(bundle, tmp_path):
    gw = gateway.wire(config_for(bundle, tmp_path / "out.jsonl", max_wearers=2))
    try:
        for k in range(4):
            gw.take_in(f"w{k}", chunks_of(k, 2), Counter(), time.monotonic())
        final = gateway.drain(gw, threading.Event())
    finally:
        gw.source.sock.close()
    assert set(final["wearers"]) == {"w0", "w1"}
    assert final["unattributed"]["wearer_limit"] == 2 * 2 * 64 and final["balanced"]


def test_a_signal_s_reason_wins_over_a_source_that_ends_meanwhile(bundle, tmp_path):
    """SIGTERM stops the sources too: their END, taken in the same turn, must not make an episode cut by the signal
    say 'the source ended' (the single-wearer daemon's rule)."""
    from deploy.feed import END
    gw = gateway.wire(config_for(bundle, tmp_path / "out.jsonl", wearer_timeout_s=30.0))
    try:
        stop = threading.Event()

        def signal_then_end(timeout):       # the signal comes while the loop waits; the source ends with it
            stop.reason = "the daemon was stopped (SIGTERM)"
            stop.set()
            return {}, [END]
        gw.inbox.take = signal_then_end
        assert gateway.loop(gw, stop) == "the daemon was stopped (SIGTERM)"
        gw.inbox.take = lambda timeout: ({}, [END])
        assert gateway.loop(gw, threading.Event()) == "the source udp ended"
    finally:
        gw.source.sock.close()


def test_a_bundle_that_raises_one_any_fog_event_per_freeze_is_honoured_per_wearer(tmp_path):
    """events.mode = "any" (one detector on the any-FOG probability, here the sum of the classes': the manifest's
    output.any_fog): each wearer's events are still its own daemon's."""
    bundle = make_bundle(tmp_path / "any", batch=(1, 4, 8), exact_rows=True, gru=16, any_fog="sum",
                         events={**EVENTS, "mode": "any"})
    streams = {f"w{k}": chunks_of(400 + k, 45) for k in range(3)}
    run_gateway(bundle, streams, tmp_path / "gateway.jsonl")
    events = 0
    for device, chunks in streams.items():
        single_daemon(bundle, chunks, tmp_path / f"{device}.jsonl")
        theirs = messages(tmp_path / f"{device}.jsonl")
        assert messages(tmp_path / "gateway.jsonl", device) == theirs, device
        events += sum(m["type"] == "event" for m in theirs)
        assert all(m["class"] == "FOG" for m in theirs if m["type"] in ("onset", "event"))   # the one any-FOG stream
    assert events >= 1
