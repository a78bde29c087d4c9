"""How many wearers one gateway holds in real time, and against one single-wearer daemon per wearer.

    python benchmarks/bench_gateway.py --wearers N --seconds S [--cores 1] [--bundle B] --json OUT
        [--find-max] [--vs-separate] [--plot PNG] [--check-wearers K]

N simulated wearers send 64 Hz samples over UDP on 127.0.0.1, paced in real time (a datagram of 8 samples every
0.125 s per wearer, the wearers' phases spread over one hop), for S seconds: real recordings from ../shared
(Daphnet, the Stanford 64 Hz trials, mobgap walking resampled to 64 Hz) when present, and synthetic ones
(deploy.synth). The gateway (`python -m deploy B --gateway`, engines at batch 1/8/32) runs pinned to `--cores` CPUs
(os.sched_setaffinity; with --cores 1 the sender runs on the other core). Reported per N:
- decision latency (sample arrival to decision: a window's newest sample received to its output decided, the
  daemon's `hop_latency`): p50 = the median wearer's p50, p99 = the worst wearer's p99 (pooled p99 beside it);
- skipped hops, lost samples (sent but not accepted: kernel drops, inbox drops), the gateway's CPU seconds during
  the sending window, its peak RSS;
- held_real_time: every wearer's p99 below the hop (0.5 s), no skipped hop, no lost sample;
- events_equal_single: the events of K wearers (default all, at most --check-wearers) equal those of the
  single-wearer daemon's own code fed the same chunks (deploy.daemon wire/_process/drain, in this process).
`--find-max` doubles N from --wearers until a run is not held, then bisects (to 5 %); `--vs-separate` runs the same
for N single-wearer daemons side by side (each `python -m deploy B --udp-port 0 --threads 1`, lines), same cores.
The machine's load average is recorded with every run (a shared machine: compare runs made together).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deploy.wearer_formats import pack_frame  # noqa: E402

RATE, PER_DATAGRAM, HOP_S = 64.0, 8, 0.5
SHARED = REPO.parent / "shared" / "data"


# ------------------------------------------------------------------ signals

def signals(seconds: float) -> list[tuple[str, np.ndarray]]:
    """(name, (n, 3) float32 g at 64 Hz) of every real recording found, then synthetic ones."""
    from deploy.preprocess import convert_units, resample
    from deploy.recording import read_recording
    found = []
    patterns = [("daphnet", "daphnet/S*.txt"), ("stanford", "stanford-imu-fog-64hz/*.npz"),
                ("mobgap", "mobgap-walking/*/*/*Test5*.csv")]
    for name, pattern in patterns:
        for path in sorted(SHARED.glob(pattern))[:8]:
            try:
                rec = read_recording(path, layout="mobgap" if name == "mobgap" else None)
            except Exception:   # a file this reader does not take: the others will do
                continue
            acc = convert_units(rec.acc, rec.units, "g")
            if rec.rate_hz != RATE:
                acc = resample(acc, rec.rate_hz, RATE)
            if len(acc) > RATE * 10 and np.isfinite(acc).all():
                found.append((f"{name}:{path.stem}", acc.astype(np.float32)))
    from deploy.synth import synth_recording
    for seed in range(8):
        rec = synth_recording(minutes=max(1.0, seconds / 60 + 0.5), seed=5000 + seed, rate_hz=RATE)
        found.append((f"synthetic:{5000 + seed}", convert_units(rec.acc, rec.units, "g").astype(np.float32)))
    return found


def wearer_samples(k: int, seconds: float, pool) -> tuple[np.ndarray, np.ndarray]:
    """Wearer k's samples: (t seconds of its own clock, acc float32 g), a recording of the pool from an offset,
    looped when short (time goes on)."""
    rng = np.random.default_rng(k)
    acc = pool[k % len(pool)][1]
    n = int(seconds * RATE)
    idx = (int(rng.integers(0, max(1, len(acc) - n))) + np.arange(n)) % len(acc)
    return 1000.0 * k + np.arange(n) / RATE, acc[idx]


def schedule(n_wearers: int, seconds: float, pool, lines: bool) -> list[tuple[float, int, bytes]]:
    """(send offset s, wearer, datagram) of every datagram, in time order; phases spread over one hop."""
    out = []
    for k in range(n_wearers):
        t, acc = wearer_samples(k, seconds, pool)
        phase = (k * HOP_S / n_wearers) % HOP_S
        for i in range(0, len(t), PER_DATAGRAM):
            j = i + PER_DATAGRAM
            if lines:
                data = "".join(f"{float(t[m])!r},{float(acc[m, 0])!r},{float(acc[m, 1])!r},{float(acc[m, 2])!r}\n"
                               for m in range(i, j)).encode()
            else:
                data = pack_frame(f"w{k:04d}", t[i:j], acc[i:j])
            out.append((phase + j / RATE, k, data))
    out.sort(key=lambda item: item[0])
    return out


def send(plan, ports: list[int], stop_at: float | None = None) -> float:
    """Send `plan` paced in real time (to ports[wearer], or ports[0] for all); returns the start (monotonic)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic() + 0.2
    for due, k, data in plan:
        wait = start + due - time.monotonic()
        if wait > 0.001:
            time.sleep(wait)
        sock.sendto(data, ("127.0.0.1", ports[k] if len(ports) > 1 else ports[0]))
    sock.close()
    return start


# ------------------------------------------------------------------ processes

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Proc:
    """A daemon subprocess pinned to `cores`, its stderr read on a thread (READY, the final counters)."""

    def __init__(self, args: list[str], cores: set[int]):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.p = subprocess.Popen([sys.executable, "-m", "deploy", *args], cwd=REPO, env=env, text=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  preexec_fn=lambda: os.sched_setaffinity(0, cores))
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append(line)
            if "fog-daemon ready" in line:
                self.ready.set()

    def port(self) -> int:
        ready = next(line for line in self.lines if "fog-daemon ready" in line)
        return int(ready.split("source udp 127.0.0.1:")[1].split()[0].rstrip(",)"))

    def stop(self) -> dict:
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=120)
        time.sleep(0.1)
        found = [line for line in self.lines if line.startswith('{"counters"')]
        if not found:
            raise SystemExit("the daemon printed no counters:\n" + "".join(self.lines[-30:]))
        return json.loads(found[-1])["counters"]


def wait_ready(procs, timeout=600):
    deadline = time.monotonic() + timeout
    for proc in procs:
        if not proc.ready.wait(max(0.1, deadline - time.monotonic())):
            raise SystemExit("a daemon did not start:\n" + "".join(proc.lines[-30:]))


# ------------------------------------------------------------------ one run

STOPPED = "the daemon was stopped (SIGTERM)"   # why the runs end: an episode still going then says so


def single_daemon_events(bundle: Path, t, acc, out: Path) -> list[dict]:
    """The events of the single-wearer daemon's own code fed the wearer's datagrams as chunks, ended as the runs
    are (SIGTERM)."""
    from deploy import daemon
    from deploy.config import build_config
    from deploy.sources import Chunk
    config = build_config(None, [{"bundle": str(bundle), "backend": "onnxruntime", "threads": 1,
                                  "source": {"kind": "stdin"}, "sinks": [{"kind": "jsonl", "path": str(out)}],
                                  "log": {"status_interval_s": 0}}])
    w, stop = daemon.wire(config), threading.Event()
    for i in range(0, len(t), PER_DATAGRAM):
        daemon._process(Chunk(t[i:i + PER_DATAGRAM].copy(), acc[i:i + PER_DATAGRAM].astype(np.float64),
                              time.monotonic()), w, stop)
    daemon.drain(w, stop, STOPPED)
    return events_in(out)


def events_in(path: Path, device: str | None = None) -> list[dict]:
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        m = json.loads(line)
        if m["type"] in ("onset", "event") and (device is None or m.get("device") == device):
            found.append({k: v for k, v in m.items() if k not in ("wall_time", "device")})
    return found


def check_events(bundle, n, seconds, pool, tmp, got, limit) -> tuple[bool, int]:
    tmp = Path(tempfile.mkdtemp(dir=tmp))   # a file sink appends: every check writes fresh files
    """Do `limit` wearers (spread over 0..n-1) have the events of their own daemon? got(k) -> their events."""
    limit = min(n, limit)
    checked = sorted({int(round(i * (n - 1) / max(1, limit - 1))) for i in range(limit)})
    differ = []
    for k in checked:
        t, acc = wearer_samples(k, seconds, pool)
        if single_daemon_events(bundle, t, acc, tmp / f"ref-{n}-{k}.jsonl") != got(k):
            differ.append(k)
    if differ:
        print(f"events differ from the single-wearer daemon's for wearers {differ}", file=sys.stderr, flush=True)
    return not differ, len(checked)


def figures(n, seconds, cores, per_wearer: list[dict], skipped, accepted, cpu, rss, equal, checked, load) -> dict:
    p50 = [w["hop_latency_ms"]["p50"] for w in per_wearer]
    p99 = [w["hop_latency_ms"]["p99"] for w in per_wearer]
    worst = float("inf") if len(p99) < n or not np.isfinite(p99).all() else max(p99) / 1e3
    lost = int(n * int(seconds * RATE) - accepted)
    return {"wearers": n, "seconds": seconds, "cores": cores,
            "held_real_time": bool(worst < HOP_S and skipped == 0 and lost == 0),
            "p50_decision_latency_s": round(float(np.median(p50)) / 1e3, 5) if p50 else None,
            "p99_decision_latency_s": round(worst, 5), "skipped_hops": int(skipped), "lost_samples": lost,
            "events_equal_single": equal, "wearers_checked": checked, "cpu_s": round(cpu, 2),
            "cores_used": round(cpu / seconds, 3), "peak_rss_mb": round(rss, 1), "load_avg": load}


def run_gateway(args, n: int, pool, tmp: Path) -> dict:
    out = tmp / f"gw-{n}.jsonl"
    proc = Proc([str(args.bundle), "--gateway", "--udp-port", "0", "--sink", f"file:{out}", "--threads", "1",
                 "--status-interval", "0", "--set", "source.rcvbuf=4194304",
                 "--set", f"gateway.max_wearers={max(1000, n)}", "--set", f"gateway.metrics_wearers={n}"],
                args.gateway_cores)
    plan = schedule(n, args.seconds, pool, lines=False)
    wait_ready([proc])
    load0, cpu0 = os.getloadavg()[0], cpu_seconds(proc.p.pid)
    send(plan, [proc.port()])
    time.sleep(1.0)   # the last windows
    cpu, rss, load1 = cpu_seconds(proc.p.pid) - cpu0, peak_rss_mb(proc.p.pid), os.getloadavg()[0]
    c = proc.stop()
    per_wearer = list(c["wearers"].values())
    equal, checked = check_events(args.bundle, n, args.seconds, pool, tmp, lambda k: events_in(out, f"w{k:04d}"),
                                  args.check_wearers)
    result = figures(n, args.seconds, len(args.gateway_cores), per_wearer, c["hops_skipped_behind"],
                     c["accepted"], cpu, rss, equal, checked, [round(load0, 2), round(load1, 2)])
    result.update(pooled_p99_decision_latency_s=c["hop_latency_ms"]["p99"] / 1e3, batches=c["batches"],
                  kernel_dropped_datagrams=c["kernel_dropped_datagrams"], balanced=c["balanced"])
    return result


def run_separate(args, n: int, pool, tmp: Path) -> dict:
    outs = [tmp / f"sep-{n}-{k}.jsonl" for k in range(n)]
    procs = [Proc([str(args.bundle), "--udp-port", "0", "--sink", f"file:{out}", "--threads", "1",
                   "--status-interval", "0", "--set", "source.rcvbuf=4194304"], args.gateway_cores) for out in outs]
    plan = schedule(n, args.seconds, pool, lines=True)
    wait_ready(procs)
    load0, cpu0 = os.getloadavg()[0], sum(cpu_seconds(p.p.pid) for p in procs)
    send(plan, [p.port() for p in procs])
    time.sleep(1.0)
    cpu = sum(cpu_seconds(p.p.pid) for p in procs) - cpu0
    rss, load1 = sum(peak_rss_mb(p.p.pid) for p in procs), os.getloadavg()[0]
    counters = [p.stop() for p in procs]
    equal, checked = check_events(args.bundle, n, args.seconds, pool, tmp, lambda k: events_in(outs[k]),
                                  args.check_wearers)
    return figures(n, args.seconds, len(args.gateway_cores), counters, sum(c["hops_skipped_behind"] for c in counters),
                   sum(c["accepted"] for c in counters), cpu, rss, equal, checked, [round(load0, 2), round(load1, 2)])


def find_max(run, start: int, limit: int) -> tuple[int, list[dict]]:
    """Double N while held, then bisect between the last held and the first not (to 5 %); held at `limit`: the
    search stops there (the report says the maximum is at least that)."""
    trials, best, worst, n = [], 0, None, start
    while worst is None:
        trials.append(run(n))
        print(json.dumps(trials[-1]), flush=True)
        if trials[-1]["held_real_time"] and n < limit:
            best, n = n, min(limit, n * 2)
        elif trials[-1]["held_real_time"]:
            return n, trials
        else:
            worst = n
    while worst - best > max(1, int(0.05 * max(best, 1))):
        n = (best + worst) // 2
        trials.append(run(n))
        print(json.dumps(trials[-1]), flush=True)
        best, worst = (n, worst) if trials[-1]["held_real_time"] else (best, n)
    return best, trials


def plot(trials: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(11, 4))
    for (name, runs), color in zip(trials.items(), ("tab:blue", "tab:orange")):
        runs = sorted(runs, key=lambda r: r["wearers"])
        n = [r["wearers"] for r in runs]
        lat.plot(n, [1e3 * r["p99_decision_latency_s"] for r in runs], "o-", color=color,
                 label=f"{name} p99 (worst wearer)")
        lat.plot(n, [1e3 * r["p50_decision_latency_s"] for r in runs], "o--", color=color, alpha=0.6,
                 label=f"{name} p50 (median wearer)")
        cpu.plot(n, [r["cores_used"] for r in runs], "o-", color=color, label=name)
    lat.axhline(1e3 * HOP_S, color="grey", lw=0.8, ls=":", label="hop (real-time bound)")
    lat.set(xlabel="wearers", ylabel="decision latency, ms", yscale="log", title="sample arrival to decision")
    cpu.set(xlabel="wearers", ylabel="cores used (CPU s / s)", title="CPU")
    lat.legend(fontsize=8)
    cpu.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wearers", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--cores", type=int, choices=(1, 2), default=2)
    ap.add_argument("--bundle", help="default: toolkit export --target cpu --batch 1,8,32 of the shipped fog-small")
    ap.add_argument("--json", required=True, help="write the figures here")
    ap.add_argument("--find-max", action="store_true")
    ap.add_argument("--vs-separate", action="store_true")
    ap.add_argument("--max-wearers", type=int, default=1024, help="--find-max searches no further")
    ap.add_argument("--max-separate", type=int, default=160,
                    help="--find-max starts no more single-wearer daemons than this (~70 MB each: a shared machine)")
    ap.add_argument("--check-wearers", type=int, default=50, help="wearers whose events are compared")
    ap.add_argument("--plot", help="latency and CPU against N (PNG)")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    args.gateway_cores = set(cpus[:args.cores])
    if args.cores == 1 and len(cpus) > 1:   # the sender on another core than what is measured
        os.sched_setaffinity(0, set(cpus[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.bundle:
            args.bundle = tmp / "bundle"
            subprocess.run([sys.executable, "-m", "toolkit.cli", "export", "--target", "cpu", "--batch", "1,8,32",
                            "--out", str(args.bundle), "--quiet"], cwd=REPO, check=True,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))
        pool = signals(args.seconds)
        print(f"{len(pool)} recordings: " + ", ".join(name for name, _ in pool), flush=True)
        runs = {"gateway": (lambda n: run_gateway(args, n, pool, tmp), args.max_wearers)}
        if args.vs_separate:
            runs["separate daemons"] = (lambda n: run_separate(args, n, pool, tmp),
                                        min(args.max_wearers, args.max_separate))
        report, trials = {}, {}
        for name, (run, limit) in runs.items():
            if args.find_max:
                best, trials[name] = find_max(run, args.wearers, limit)
                figures_ = next(r for r in trials[name] if r["wearers"] == args.wearers)
                figures_ = {**figures_, "max_wearers_real_time": best, "trials": trials[name],
                            "max_is_the_search_limit": best == limit}
            else:
                figures_ = run(args.wearers)
                trials[name] = [figures_]
                print(json.dumps(figures_), flush=True)
            if name == "gateway":
                report.update(figures_)
            else:
                report["separate"] = figures_
        if args.find_max and args.vs_separate and report["separate"]["max_wearers_real_time"]:
            report["ratio_max_wearers"] = round(report["max_wearers_real_time"]
                                                / report["separate"]["max_wearers_real_time"], 2)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        if args.plot:
            plot(trials, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
