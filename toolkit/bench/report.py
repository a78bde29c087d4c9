"""What `toolkit bench` prints and draws: the report table, the head-to-head ratios, the batch-sweep plot."""
from __future__ import annotations

from pathlib import Path

from deploy.lazy import lazy_import

matplotlib = lazy_import("matplotlib", "plot", "the batch-sweep plot")
plt = lazy_import("matplotlib.pyplot", "plot", "the batch-sweep plot")


def format_ratios(result: dict[str, dict[str, dict]]) -> str:
    """Per setting, every backend's ms per call, the threads it ran at, and its speed-up over PyTorch eager and over
    the naive export (a plain torch.onnx.export in a default onnxruntime session: what a user gets without the
    toolkit). The project's engines take the setting's threads as a budget and may use fewer (a measured cap)."""
    lines = ["batch 1, all backends interleaved in one run (the fair ratio; threads = what each backend ran at):"]
    for setting, row in result.items():
        h2h, used = row["ms"], row.get("threads") or {}
        eager, naive = h2h.get("pytorch-eager"), h2h.get("onnxruntime-naive")
        lines.append(f"  {setting}:")
        lines += [f"    {name:<20}{ms:>9.3f} ms  {threads_cell(used, name):>9}"
                  + (f"   {eager / ms:5.2f}x PyTorch eager" if eager else "")
                  + (f"   {naive / ms:5.2f}x naive export" if naive else "") for name, ms in h2h.items()]
    return "\n".join(lines)


def threads_cell(used: dict, name: str) -> str:
    """The threads `name` ran at, as the tables print them; blank when the report does not say (older reports)."""
    return threads_label(used[name]) if name in used else ""


def threads_label(threads) -> str:
    """"2 threads", "1 thread", or "default" (None: the runtime's own default)."""
    if threads is None:
        return "default"
    return f"{threads} thread{'s' if threads > 1 else ''}"


def format_table(report: dict) -> str:
    s, m = report["model"], report["machine"]
    lines = [f"{s['name']}: input {tuple(s['input_shape'])}, {s['macs'] / 1e6:.1f} MMAC, "
             f"{(s.get('parameters') or 0) / 1e6:.2f} M parameters, window {s['window_s']} s, hop {s['hop_s']} s",
             f"machine: {m['class']} ({m.get('cpu')}), threads {m['threads']}, MatMul "
             + ", ".join(f"{k} {v:.1f} GMAC/s" for k, v in m["matmul_gmacs_per_s"].items()), ""]
    head = f"{'backend':<18}{'median ms':>10}{'p90':>9}{'p99':>9}{'cpu ms':>9}{'win/s':>9}{'RTF':>9}" \
           f"{'peak MiB':>10}{'norm.':>8}{'of bound':>10}"
    lines += ["batch 1 (wall-clock median/p90/p99; cpu ms = thread CPU time per call, which win/s and RTF use "
              "when single-threaded):", head, "-" * len(head)]
    for name, r in report["backends"].items():
        b = r["batch1"]
        rtf = _fmt(b["realtime_factor"]) if b.get("realtime_factor") else "-"
        frac = f"{b['fraction_of_bound']:.0%}" if b.get("fraction_of_bound") is not None else "-"
        lines.append(f"{name:<18}{b['median_ms']:>10.3f}{b['p90_ms']:>9.3f}{b['p99_ms']:>9.3f}{b['cpu_median_ms']:>9.3f}"
                     f"{_fmt(b['windows_per_s']):>9}{rtf:>9}{b['peak_mib']:>10.1f}{b['normalized_latency']:>8.2f}{frac:>10}")
    lines += _split_lines(report)
    h2h = report.get("head_to_head_ms") or {}
    if h2h:
        slowest = h2h.get("pytorch-eager") or max(h2h.values())
        lines += ["", "all backends interleaved at batch 1 (one run; the fair ratio):"]
        used = report.get("head_to_head_threads") or {}
        lines += [f"  {name:<18}{ms:>9.3f} ms  {threads_cell(used, name):>9}   {slowest / ms:5.2f}x "
                  f"{'PyTorch eager' if 'pytorch-eager' in h2h else ''}" for name, ms in h2h.items()]
    batches = sorted({row["batch"] for r in report["backends"].values() for row in r.get("sweep", [])})
    if batches:
        lines += ["", "batch sweep (ms per call / windows per s; thread CPU time when single-threaded):",
                  f"{'backend':<18}" + "".join(f"{'b' + str(b):>18}" for b in batches)]
        for name, r in report["backends"].items():
            by = {row["batch"]: row for row in r.get("sweep", [])}
            cells = [f"{_sweep_ms(by[b]):.2f} / {_fmt(by[b]['windows_per_s'])}" if b in by else "-" for b in batches]
            lines.append(f"{name:<18}" + "".join(f"{c:>18}" for c in cells))
    for name, why in report["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)


def _split_lines(report: dict) -> list[str]:
    """Per backend: encoder vs recurrence (its own profiler) and the recurrence against its memory-bandwidth floor."""
    rows = [(n, r["batch1"]) for n, r in report["backends"].items() if (r["batch1"].get("split") or {}).get(
        "recurrence_ms") is not None]
    if not rows:
        return []
    bw = report["machine"].get("memory_gb_per_s")
    lines = ["", f"where the time goes (profiler; memory bound = recurrent weight bytes per step x steps / "
                 f"{bw:.1f} GB/s measured copy bandwidth):",
             f"  {'backend':<20}{'encoder ms':>11}{'recur. ms':>11}{'recur. %':>9}{'mem. bound ms':>15}{'of bound':>10}"]
    for name, b in rows:
        sp, bound, frac = b["split"], b.get("memory_bound_ms"), b.get("recurrence_fraction_of_memory_bound")
        lines.append(f"  {name:<20}{sp['encoder_ms']:>11.1f}{sp['recurrence_ms']:>11.1f}"
                     f"{100 * (sp['recurrence_share'] or 0):>8.0f}%{(f'{bound:.1f}' if bound else '-'):>15}"
                     f"{(f'{frac:.0%}' if frac else '-'):>10}")
    return lines


def _fmt(value: float) -> str:
    """Throughputs span 0.8 to 800: whole numbers when large, two significant digits when small."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _sweep_ms(row: dict) -> float:
    return row["cpu_median_ms"] if row.get("clock") == "thread-cpu" else row["median_ms"]


def realtime_budget_s(benched: dict) -> float | None:
    """The real-time budget of one wearer's stream: one window per hop (the window when the hop is unknown)."""
    return benched.get("hop_s") or benched.get("window_s")


def _budget_lines(benched: dict, rate_ax, latency_ax) -> None:
    """The real-time budget on both axes: one window per hop needs 1/hop windows per second and at most hop s per
    window; above the first line (below the second) a backend keeps up with a wearer."""
    budget = realtime_budget_s(benched)
    if not budget:
        return
    label = f"real-time budget (1 window per {budget:g} s hop)"
    rate_ax.axhline(1.0 / budget, color="r", ls="--", lw=1, label=label)
    latency_ax.axhline(budget * 1e3, color="r", ls="--", lw=1, label=label)
    latency_ax.legend(fontsize=8)


def plot_sweep(report: dict, path) -> Path:
    """PNG of the batch sweep (sweep_figure)."""
    fig = sweep_figure(report)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sweep_figure(report: dict):
    """The batch sweep: windows/s and per-window latency against batch size, one line per backend, with the
    real-time budget; returns the matplotlib figure (two axes)."""
    matplotlib.use("Agg")  # before pyplot is imported: no display needed
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, r in report["backends"].items():
        rows = r.get("sweep", [])
        if not rows:
            continue
        b = [row["batch"] for row in rows]
        ax1.plot(b, [row["windows_per_s"] for row in rows], marker="o", label=name)
        ax2.plot(b, [_sweep_ms(row) / row["batch"] for row in rows], marker="o", label=name)
    _budget_lines(report["model"], ax1, ax2)
    for ax, label in ((ax1, "windows / s"), (ax2, "ms per window")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend()
    m = report["machine"]
    fig.suptitle(f"{report['model']['name']} on {m['class']} ({m.get('cpu')}, {m['threads']} thread(s))")
    fig.tight_layout()
    return fig
