"""How much the daemon adds to the engine, what the look-ahead buys, and streamed == offline event figures.

    python benchmarks/bench_daemon.py                      # stand-in bundle shaped like fog-small
    python benchmarks/bench_daemon.py --bundle BUNDLE      # a real bundle from `toolkit export`

Part 1 runs `python -m deploy` (no torch in that process) replaying synthetic signal as fast as possible and reports
wall time / summed engine time (target <= 1.25), RSS (target <= 150 MB with onnxruntime), hop latency p50/p99 and
the machine's load average while it ran (2 shared cores: the figures move with it).
Part 2 (the look-ahead trade-off) evaluates held-out labelled synthetic recordings (`--heldout-seed`, default 3000:
neither the training seed 0 nor the model report's 1000) offline on the daemon's grid at several look-aheads, with
the bundle's event settings: sensitivity, false alarms per hour, onset latency (detect_s - true onset) and cue
latency (when the daemon has decided that sample: onset latency + the look-ahead wait), and the probability
deviation from whole-window averaging.
Part 3 (`--acceptance`) replays the same recordings through the daemon at the bundle's hop and look-ahead and
reports its event figures next to the offline ones (issue 7: they must agree).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FOG_SMALL = {"rate_hz": 64, "units": "g", "patch": 8, "n_patches": 128, "normalization": "window", "scale": 1.0,
             "layout": "BCT"}
LOOKAHEADS_S = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, None)   # None = whole windows


def make_standin(folder: Path) -> Path:
    # built in a child process so this process (and the daemon) never holds torch
    code = ("from tests.helpers_bundle import make_bundle; import json, sys; "
            f"make_bundle(sys.argv[1], preprocess=json.loads(sys.argv[2]), hidden=64, gru=64)")
    subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(FOG_SMALL)], check=True, cwd=REPO)
    return folder


def overhead(bundle: Path, recording: Path, threads: int, precision: str | None = None) -> dict:
    cmd = [sys.executable, "-m", "deploy", str(bundle), "--replay", str(recording), "--sink", "file:/dev/null",
           "--hop-s", "0.5", "--lookahead-s", "0.5", "--threads", str(threads), "--log-level", "warning",
           "--status-interval", "0", "--backend", "onnxruntime"]
    if precision:
        cmd += ["--precision", precision]
    load_before = os.getloadavg()[0]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800)
    if result.returncode:
        raise SystemExit(result.stderr)
    c = json.loads([l for l in result.stderr.splitlines() if l.startswith('{"counters"')][-1])["counters"]
    return {"hops": c["hops_run"], "wall_s": c["uptime_s"], "engine_s": c["engine_s"],
            "ratio": round(c["uptime_s"] / c["engine_s"], 3),
            "overhead_ms_per_hop": round((c["uptime_s"] - c["engine_s"]) / c["hops_run"] * 1e3, 3),
            "peak_rss_mb": c["peak_rss_mb"], "hop_latency_ms": c["hop_latency_ms"], "engine_ms": c["engine_ms"],
            "load_avg_1min": round((load_before + os.getloadavg()[0]) / 2, 2)}


def heldout_recordings(seed: int, subjects: int, minutes: float):
    """Labelled synthetic recordings of subjects drawn with `seed` (subject ids carry it, e.g. syn3000-s02)."""
    from calibration.data import synthetic_recordings  # numpy only: no torch in this process
    return synthetic_recordings(subjects, seed=seed, minutes=minutes)


def model_rate_labels(rec, spec) -> np.ndarray:
    from calibration.data import prepare_recording
    return prepare_recording(rec, spec).labels


def decided_s(detect_s: float, rate: float, hop: int, keep: int, n: int) -> float:
    """When the daemon has decided the sample at detect_s: after the last window contributing to it (the grid of
    deploy/offline.py), i.e. at the newest sample it then holds (the daemon's `decided_s`)."""
    g = int(round(detect_s * rate))
    end = (max(0, g + keep - hop) // hop + 1) * hop
    return (min(end, n) - 1) / rate


def event_figures(labels, events, rate, hop, keep, n) -> dict:
    """deploy.metrics.event_metrics, plus the cue latency (decided - onset) from the same events."""
    from deploy.events import Event
    from deploy.metrics import event_metrics
    figures = event_metrics(labels, events, rate)
    cued = [Event(e.cls, e.onset_s, e.offset_s, decided_s(e.detect_s, rate, hop, keep, n), e.peak) for e in events]
    figures["cue_latencies_s"] = event_metrics(labels, cued, rate)["latencies_s"]
    return figures


def pooled(per_recording: list[dict]) -> dict:
    from deploy.metrics import pool_event_metrics
    out = pool_event_metrics(per_recording)
    cue = np.array([x for m in per_recording for x in m["cue_latencies_s"]])
    out["cue_latency_median_s"] = float(np.median(cue)) if cue.size else float("nan")
    out["cue_latency_p90_s"] = float(np.percentile(cue, 90)) if cue.size else float("nan")
    keys = ("episodes_true", "sensitivity", "false_alarms", "false_alarms_per_hour", "latency_median_s",
            "latency_p90_s", "cue_latency_median_s", "cue_latency_p90_s", "hours")
    return {k: round(out[k], 4) if isinstance(out[k], float) else out[k] for k in keys}


def lookahead_tradeoff(bundle_dir: Path, recs, threads: int) -> list[dict]:
    from deploy.bundle import Bundle
    from deploy.engines import open_engine
    from deploy.events import detect_events
    from deploy.offline import contribution, predict_recording
    bundle = Bundle.load(bundle_dir)
    spec, events = bundle.input.spec, bundle.events
    knobs = events.detector_kwargs()
    engine = open_engine(bundle, backend="onnxruntime", threads=threads)
    infer = lambda b: np.concatenate([engine.infer(x[None]).copy() for x in b])  # noqa: E731
    rate, hop = spec.rate_hz, events.hop_samples(spec.rate_hz)
    labels = [model_rate_labels(r, spec) for r in recs]
    full = [predict_recording(r, spec, infer, hop, None) for r in recs]
    rows = []
    for look_s in LOOKAHEADS_S:
        look = replace(events, lookahead_s="full" if look_s is None else look_s).lookahead_samples(rate)
        keep = contribution(spec.window, hop, look)
        got = full if look is None else [predict_recording(r, spec, infer, hop, look) for r in recs]
        diff = np.concatenate([np.abs(g - f).ravel() for g, f in zip(got, full)])
        per = [event_figures(lab, detect_events(p, rate, classes=bundle.classes, **knobs), rate, hop, keep, len(p))
               for lab, p in zip(labels, got)]
        rows.append({"lookahead_s": "full" if look_s is None else look_s,
                     "max_decision_delay_s": round(keep / rate, 3), **pooled(per),
                     "mean_abs_diff_vs_full": round(float(diff.mean()), 4),
                     "p99_abs_diff_vs_full": round(float(np.percentile(diff, 99)), 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def acceptance(bundle_dir: Path, recs, tmp: Path, threads: int) -> dict:
    """The same recordings through the daemon (deploy.daemon.run, replay as fast as possible) and offline, at the
    bundle's hop, look-ahead and event settings."""
    from deploy.bundle import Bundle
    from deploy.config import build_config, event_settings
    from deploy.daemon import run
    from deploy.engines import open_engine
    from deploy.events import Event, detect_events
    from deploy.offline import contribution, predict_recording
    from deploy.recording import write_recording
    bundle = Bundle.load(bundle_dir)
    spec = bundle.input.spec
    engine = open_engine(bundle, backend="onnxruntime", threads=threads)
    infer = lambda b: np.concatenate([engine.infer(x[None]).copy() for x in b])  # noqa: E731
    rate = spec.rate_hz
    offline, streamed, cue_mismatch = [], [], 0
    for k, rec in enumerate(recs):
        path, out = tmp / f"heldout{k}.npz", tmp / f"events{k}.jsonl"
        write_recording(rec, path, "npz")
        config = build_config(None, [{"bundle": str(bundle_dir), "threads": threads, "backend": "onnxruntime",
                                      "source": {"kind": "replay", "path": str(path)},
                                      "sinks": [{"kind": "jsonl", "path": str(out)}],
                                      "log": {"status_interval_s": 0}}])
        settings = event_settings(config, bundle)
        hop, look = settings.hop_samples(rate), settings.lookahead_samples(rate)
        keep = contribution(spec.window, hop, look)
        run(config)
        messages = [json.loads(line) for line in out.read_text().splitlines()]
        events = [Event(m["class"], m["onset_s"], m["offset_s"], m["detect_s"], m["peak"])
                  for m in messages if m["type"] == "event"]
        timeline = predict_recording(rec, spec, infer, hop, look)
        labels = model_rate_labels(rec, spec)
        off_events = detect_events(timeline, rate, classes=bundle.classes, **settings.detector_kwargs())
        offline.append(event_figures(labels, off_events, rate, hop, keep, len(timeline)))
        streamed.append(event_figures(labels, events, rate, hop, keep, len(timeline)))
        # the cue time computed from the grid must be the daemon's own decided_s of each onset message
        cue_mismatch += sum(abs(m["decided_s"] - decided_s(m["detect_s"], rate, hop, keep, len(timeline))) > 6e-4
                            for m in messages if m["type"] == "onset")
    return {"streamed": pooled(streamed), "offline": pooled(offline), "onsets_whose_decided_s_differs": cue_mismatch,
            "hop_s": hop / rate, "lookahead_s": None if look is None else look / rate}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", help="bundle folder (default: a stand-in shaped like fog-small)")
    ap.add_argument("--precision", help="the bundle's model to run (default: the manifest's precision)")
    ap.add_argument("--minutes", type=float, default=10.0, help="signal to replay for part 1 (default 10)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--heldout-seed", type=int, default=3000)
    ap.add_argument("--heldout-subjects", type=int, default=8)
    ap.add_argument("--heldout-minutes", type=float, default=5.0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["overhead", "tradeoff"], help="parts to skip")
    ap.add_argument("--acceptance", action="store_true", help="part 3: daemon vs offline event figures")
    args = ap.parse_args()
    from deploy.recording import write_recording
    from deploy.synth import synth_recording
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = Path(args.bundle) if args.bundle else make_standin(tmp / "bundle")
        from deploy.bundle import Bundle
        rate = Bundle.load(bundle).spec.rate_hz
        if "overhead" not in args.skip:
            rec = synth_recording(minutes=args.minutes, seed=11, rate_hz=rate)
            write_recording(rec, tmp / "rec.npz", "npz")
            runs = [overhead(bundle, tmp / "rec.npz", args.threads, args.precision) for _ in range(args.repeats)]
            middle = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
            print(json.dumps({"overhead_median_run": middle, "ratios": [r["ratio"] for r in runs],
                              "median_ratio": statistics.median(r["ratio"] for r in runs),
                              "median_overhead_ms_per_hop": statistics.median(r["overhead_ms_per_hop"] for r in runs),
                              "load_avg_1min": [r["load_avg_1min"] for r in runs]}, indent=1), flush=True)
        if "tradeoff" in args.skip and not args.acceptance:
            return 0
        recs = heldout_recordings(args.heldout_seed, args.heldout_subjects, args.heldout_minutes)
        if "tradeoff" not in args.skip:
            lookahead_tradeoff(bundle, recs, args.threads)
        if args.acceptance:
            print(json.dumps(acceptance(bundle, recs, tmp, args.threads), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
