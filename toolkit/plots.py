"""Pictures where people look rather than read (matplotlib, the `plot` extra; imported only when asked for)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy.errors import MissingDependency
from deploy.event_classes import any_fog
from deploy.recording import AXES
from deploy.scoring import any_fog_events, any_fog_settings


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependency("matplotlib", "plot", "writing plots") from exc
    return plt


def plot_recording(path, rec, probs: dict, settings: dict, rules: dict | None = None):
    """One PNG: the signal (3 axes), the truth (shaded), each scorer's any-FOG probability with the on/off
    thresholds, and its detected events, on one time axis in seconds. `probs` holds each scorer's event columns;
    `rules` its any-FOG rule ("max" or "sum", the manifest's; "max" when not given), as the scorer uses it."""
    plt = _pyplot()
    t = np.arange(rec.n_samples) / rec.rate_hz
    fig, axes = plt.subplots(1 + len(probs), 1, figsize=(14, 2.2 * (1 + len(probs))), sharex=True)
    sig = axes[0]
    for i, name in enumerate(AXES):
        sig.plot(t, rec.acc[:, i], lw=0.5, label=name)
    sig.set_ylabel(f"acc ({rec.units})")
    sig.set_title(str(rec.meta.get("name") or rec.meta.get("id") or Path(path).stem))
    sig.legend(loc="upper right", fontsize=7, ncol=3)
    knobs = any_fog_settings(settings)
    for ax, (name, p) in zip(axes[1:], probs.items()):
        any_prob = any_fog(p, None, (rules or {}).get(name, "max"))
        ax.plot(t, any_prob, lw=0.7, color="k", label=f"{name}: any-FOG probability")
        ax.axhline(knobs["on"], color="r", ls="--", lw=0.7, label=f"on {knobs['on']:g}")
        ax.axhline(knobs["off"], color="orange", ls=":", lw=0.7, label=f"off {knobs['off']:g}")
        for k, ev in enumerate(any_fog_events(any_prob, rec.rate_hz, settings)):
            end = ev.offset_s if ev.offset_s is not None else t[-1]
            ax.axvspan(ev.onset_s, end, ymin=0.9, ymax=1.0, color="tab:red", alpha=0.8,
                       label="detected event" if k == 0 else None)
        ax.set_ylim(-0.02, 1.1)
        ax.set_ylabel("probability")
        ax.legend(loc="upper left", fontsize=7, ncol=4)
    for ax in axes:
        _shade_truth(ax, rec, t)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def _shade_truth(ax, rec, t):
    if rec.mask is not None:
        invalid = ~np.asarray(rec.mask, bool)
        ax.fill_between(t, 0, 1, where=invalid, transform=ax.get_xaxis_transform(), color="0.85", lw=0,
                        label=None)
    if rec.labels is not None:
        ax.fill_between(t, 0, 1, where=rec.labels.max(axis=1) > 0.5, transform=ax.get_xaxis_transform(),
                        color="tab:blue", alpha=0.2, lw=0)


def plot_recordings(out_dir, recs, probs: dict, settings: dict, rules: dict | None = None) -> list[Path]:
    """`probs`: {scorer name: [per-recording probabilities]}, `rules`: {scorer name: any-FOG rule}; one PNG per
    recording in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, rec in enumerate(recs):
        name = str(rec.meta.get("name") or rec.meta.get("id") or f"recording{i}").replace("/", "_")
        written.append(plot_recording(out / f"{i:03d}-{name}.png", rec, {k: v[i] for k, v in probs.items()},
                                      settings, rules))
    return written


def operating_points_figure(operating_points: dict, at_fa: dict | None = None, labels=(0.5, 0.9, 0.99, 0.999, 0.9999)):
    """Episode sensitivity against false alarms per hour, one line per scorer (deploy.operating_points sweeps, the
    thresholds in `labels` written beside their points), the threshold in use ringed, the one chosen for
    --at-fa-per-hour starred, the requested rate a dashed line. Returns the matplotlib figure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    chosen = (at_fa or {}).get("chosen", {})
    for k, (name, sweep) in enumerate(operating_points.items()):
        points = sorted(sweep["points"], key=lambda p: p["on"])
        fa = np.array([p["false_alarms_per_hour"] for p in points], dtype=float)
        sens = np.array([np.nan if p["sensitivity"] is None else p["sensitivity"] for p in points], dtype=float)
        colour, short = f"C{k}", name.split(" (")[0][:28]
        ax.plot(fa, sens, marker=".", ms=4, lw=1.2, color=colour, label=name)
        for p, x, y in zip(points, fa, sens):
            if p["on"] == sweep["current"]:
                ax.plot(x, y, "o", ms=11, mfc="none", mec=colour, mew=1.5,
                        label=f"{short}: in use (on {p['on']:g})")
            if any(abs(p["on"] - t) < 1e-12 for t in labels):
                ax.annotate(f"{p['on']:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color=colour)
        if chosen.get(name):
            c = chosen[name]
            ax.plot(c["false_alarms_per_hour"], c["sensitivity"], "*", ms=14, color=colour,
                    label=f"{short}: chosen (on {c['on']:g})")
    if at_fa:
        ax.axvline(at_fa["target"], color="0.4", ls="--", lw=0.9, label=f"{at_fa['target']:g} false alarms/h asked")
    ax.set(xlabel="false alarms per hour", ylabel="episode sensitivity (episodes found / labelled)",
           title="operating points: the on-threshold moved (numbers: thresholds)", ylim=(-0.02, 1.02))
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_operating_points(path, operating_points: dict, at_fa: dict | None = None) -> Path:
    """operating_points_figure as a PNG at `path`."""
    return save_figure(operating_points_figure(operating_points, at_fa), path)


def training_figure(history: list[dict], title: str = "training"):
    """Training curves from a run's history (calibration.train.fit; history.json): train loss and the validation
    metric per epoch, the best epoch marked. Returns the matplotlib figure (two axes)."""
    plt = _pyplot()
    if not history:
        raise ValueError("no epochs in the history: nothing to plot")
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="training loss")
    metric = [np.nan if row.get("val_map") is None else row["val_map"] for row in history]
    val_ax.plot(epochs, metric, marker="o", color="tab:green", label="validation mAP")
    if not np.all(np.isnan(metric)):
        best = int(np.nanargmax(metric))
        val_ax.axvline(epochs[best], color="0.5", ls="--", lw=0.8, label=f"best: epoch {epochs[best]}")
    val_ax.set(xlabel="epoch", ylabel="validation mAP", title="validation metric")
    for ax in (loss_ax, val_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def calibration_figure(histograms: dict, method: str, names: list[str] | None = None):
    """Histograms of |activation| per quantizer (log counts) with the clipping range calibration chose (amax:
    values beyond it saturate). `histograms`: {quantizer: (counts, edges, amax)} (calibration.ptq.calibrate's
    `cache.histograms`). Returns the matplotlib figure, one axis per quantizer."""
    plt = _pyplot()
    names = list(names or histograms)
    cols = min(3, len(names)) or 1
    rows = -(-len(names) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        counts, edges, amax = histograms[name]
        used = max(1, int(np.flatnonzero(counts)[-1]) + 1 if np.any(counts) else 1)
        ax.stairs(counts[:used], edges[:used + 1], fill=True, color="tab:blue", alpha=0.6)
        ax.axvline(amax, color="r", lw=1.2, label=f"{method} amax {amax:.3g}")
        ax.set_yscale("log")
        ax.set_title(name if len(name) <= 40 else "..." + name[-37:], fontsize=8)
        ax.set_xlabel("|activation|", fontsize=7)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 80) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_training(out_dir, history: list[dict], title: str = "training") -> Path:
    """training.png in `out_dir` (see training_figure)."""
    return save_figure(training_figure(history, title), Path(out_dir) / "training.png")


def plot_calibration(out_dir, histograms: dict, method: str, per_page: int = 12) -> list[Path]:
    """calibration-NN.png pages in `out_dir`, `per_page` quantizers each (see calibration_figure)."""
    names = sorted(histograms)
    if not names:
        raise ValueError("no activation histograms to plot (the max method keeps none; choose another --method)")
    return [save_figure(calibration_figure(histograms, method, names[i:i + per_page]),
                        Path(out_dir) / f"calibration-{i // per_page + 1:02d}.png")
            for i in range(0, len(names), per_page)]
