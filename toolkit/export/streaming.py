"""Export's streaming-fidelity step: the bundle's fp32 graph streamed through the daemon's own pipeline over
recordings, compared with the model offline under its declared normalization (deploy.fidelity), for each way the
stream may be normalized (deploy.wearer); the manifest's `streaming` section records the figures and the choice.

Choice ("auto"): a declared normalization that streams exactly ("window", "running") is kept; "recording" cannot
stream, so every option is measured and the one closest to offline wins (smallest |difference in time called
FOG|, then the smallest mean probability difference). Export warns loudly when the chosen option misses the
limits (deploy.fidelity.LIMIT_PP, LIMIT_PROB) or puts an event on a background class.

Then, with the chosen normalization, the look-ahead sweep (toolkit.export.lookahead): the figures at 0.5, 1, 2, 4 s
and whole windows, and the recommended look-ahead; the section's `fidelity` holds the figures at the look-ahead
the bundle uses.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np

from calibration.data import synthetic_recordings
from toolkit.export import lookahead as lookaheads
from deploy.contract.runtime import StreamingSection
from deploy.engines.onnxruntime import OnnxRuntimeEngine
from deploy.event_classes import event_columns
from deploy.fidelity import LIMIT_PP, LIMIT_PROB, Fidelity
from deploy.preprocess import prepare
from deploy.contract import STREAM_NORMALIZATIONS
from deploy.wearer import CAPTURE_S, recording_statistics, stream_setup

EXACT = ("window", "running")      # declared normalizations the stream reproduces exactly
# Seconds of model time the step may cost (estimated from one timed inference); beyond it the step is skipped and
# says why. fog-1st-place (0.4-4 s a window here, "recording" normalization: every option streamed) ran past 15 min.
BUDGET_S = 120.0
SYNTHETIC = {"subjects": 2, "minutes": 2.0, "seed": 4000}   # default fidelity recordings (never a training seed)


def fidelity_recordings(recordings=None):
    """The recordings to measure on, and how the manifest names them."""
    if recordings:
        return list(recordings), f"{len(recordings)} recordings given to export"
    recs = synthetic_recordings(SYNTHETIC["subjects"], seed=SYNTHETIC["seed"], minutes=SYNTHETIC["minutes"])
    return recs, (f"deploy.synth: {SYNTHETIC['subjects']} subjects x {SYNTHETIC['minutes']:g} min, "
                  f"seed {SYNTHETIC['seed']}")


def fixed_statistics(spec, recordings, data: str) -> dict:
    """Per-axis statistics of the recordings after units and resampling (prepare with the per-window
    normalization, which `prepare` leaves to the model input): the "fixed" option's numbers. Export takes them
    from the synthetic training-like recordings, never from the fidelity data they are then judged on."""
    plain = replace(spec, normalization="window", gravity_align=False, horizontal="sensor",
                    min_std=0.0)
    return {**recording_statistics(prepare(r, plain) for r in recordings), "data": data}


def options_to_measure(declared: str, asked: str) -> list[str]:
    if asked != "auto":
        return [asked]
    if declared in EXACT:
        return ["declared"]
    return [m for m in STREAM_NORMALIZATIONS if m != "declared"]


def measure_options(fid: Fidelity, section: StreamingSection, modes, recordings) -> dict:
    """{mode: pooled fidelity figures} of streaming `recordings` with each stream normalization in `modes`
    (`section`: the manifest's `streaming` numbers). Each recording is a session of its own: "wearer" captures
    afresh in each (no saved state, as a wearer's first session)."""
    figures = {}
    for mode in modes:
        option = replace(section, normalization=mode)
        stream_spec = stream_setup(fid.spec, option)[0]
        figures[mode] = fid.stream(recordings, stream_spec, lambda: stream_setup(fid.spec, option)[1])
    return figures


def choose(figures: dict) -> str:
    return min(figures, key=lambda m: (figures[m]["background_events"] > 0, abs(figures[m]["difference_pp"]),
                                       figures[m]["mean_abs_prob_diff"]))


def skipped(spec, reason: str) -> StreamingSection:
    """The section of a step that measured nothing, saying why (loudly, too)."""
    print(f"\n!!! export: WARNING: streaming fidelity {reason}\n", file=sys.stderr, flush=True)
    return StreamingSection(declared=spec.normalization, normalization="declared", skipped=reason)


def measure_streaming(model_file, source, events, asked: str = "auto", recordings=None,
                      budget_s: float = BUDGET_S, lookahead_asked=None) -> StreamingSection:
    """The manifest's `streaming` section: the float graph `model_file` of `source` (a ModelSource) streamed with
    the bundle's `events` (deploy.contract.events.EventSettings) through the daemon's pipeline, each stream
    normalization, then each look-ahead (`lookahead_asked`: the user's, used whatever the rule recommends)."""
    spec = source.spec
    hop = events.hop_samples(spec.rate_hz)
    if hop > spec.window:
        return skipped(spec, f"not measured: the hop ({hop} samples) is longer than the window ({spec.window}), "
                             "which the daemon refuses; export with a smaller --hop-s or more --n-patches")
    recs, data = fidelity_recordings(recordings)
    section = StreamingSection(declared=spec.normalization, tau_s=spec.running_tau_s, capture_s=CAPTURE_S,
                               fixed=fixed_statistics(spec, *fidelity_recordings()), data=data, limit_pp=LIMIT_PP,
                               limit_prob=LIMIT_PROB)
    engine = OnnxRuntimeEngine(model_file, threads=1)
    modes = options_to_measure(spec.normalization, asked)
    over = _over_budget(engine, recs, modes, events.hop_s, budget_s)
    if over:
        engine.close()
        if spec.normalization not in EXACT:   # nothing chose how the device normalizes: say what it will do
            over += (f". The declared {spec.normalization!r} normalization cannot stream, so the device falls back "
                     "to 'running', unmeasured for this model")
        return skipped(spec, over)
    columns = event_columns(source.classes, source.background)
    fid = Fidelity(spec, engine, source.classes, events, columns, source.any_fog)
    figures = measure_options(fid, section, modes, recs)
    chosen = choose(figures)
    option = replace(section, normalization=chosen)
    table = lookaheads.sweep(fid, recs, stream_setup(spec, option)[0], lambda: stream_setup(spec, option)[1],
                             lookaheads.candidates(lookahead_asked))
    engine.close()
    lookahead = lookaheads.section(table, chosen, lookahead_asked)
    used = table[lookahead["chosen"]]
    if not used["passed"]:
        warn(chosen, used, spec.normalization)
    return replace(section, normalization=chosen, options=figures, fidelity=used, lookahead=lookahead,
                   chosen_by="asked (--stream-normalization)" if asked != "auto" else
                   "declared normalization streams exactly" if chosen == "declared" else
                   "measured: closest to offline under the declared normalization")


def lookahead_set(source, given: dict) -> float | str | None:
    """The look-ahead the user (flags: `given`) or the preset set, kept whatever the sweep recommends; None."""
    return {**source.events, **{k: v for k, v in (given or {}).items() if v is not None}}.get("lookahead_s")


def with_lookahead(events, section: StreamingSection | None):
    """The bundle's event settings with the look-ahead the sweep chose (or kept), when it ran."""
    if section is None or not section.lookahead:
        return events
    return replace(events, lookahead_s=lookaheads.as_setting(section.lookahead["chosen"]))


def describe_streaming(section: StreamingSection) -> str:
    """One line for the export's step bar."""
    f = section.fidelity
    if f is None:
        return section.skipped
    return (f"{section.normalization}, look-ahead {section.lookahead['chosen']} s: "
            f"{f['percent_time_called_fog_streamed']:.2f} % time called FOG streamed vs "
            f"{f['percent_time_called_fog_offline']:.2f} % offline, agreement {100 * f['decision_agreement']:.1f} %")


def _over_budget(engine, recs, modes, hop_s: float, budget_s: float) -> str | None:
    """Why the step would exceed its budget (one inference timed, x windows streamed and offline x options), or
    None when it fits."""
    x = np.zeros(engine.input_shape, np.float32)
    engine.infer(x)
    start = time.perf_counter()
    engine.infer(x)
    one = time.perf_counter() - start
    windows = sum(len(r.acc) / r.rate_hz for r in recs) / hop_s
    calls = windows * (1 + len(modes))          # offline once (kept), then streamed once per option
    estimate = calls * one
    if estimate <= budget_s:
        return None
    return (f"not measured: ~{calls:,.0f} inferences of {one:.2f} s (offline once, then {len(modes)} option(s) "
            f"streamed) would take ~{estimate:,.0f} s, over the {budget_s:g} s budget; raise --fidelity-budget-s, "
            "or measure with --fidelity-data on fewer/shorter recordings or a single --stream-normalization")


def warn(mode: str, f: dict, declared: str) -> None:
    print(f"\n!!! export: WARNING: streamed differs from offline ({declared} normalization) beyond the limits: "
          f"normalization {mode!r} streams {f['percent_time_called_fog_streamed']:.2f} % time called FOG vs "
          f"{f['percent_time_called_fog_offline']:.2f} % offline ({f['difference_pp']:+.2f} pp, limit "
          f"{LIMIT_PP:g}), mean |probability difference| {f['mean_abs_prob_diff']:.3f} (limit {LIMIT_PROB:g}), "
          f"decision agreement {100 * f['decision_agreement']:.1f} %, background events {f['background_events']}. "
          "The device will not behave like your offline evaluation: export with a normalization that streams "
          "(--normalization window or running, and retrain) or try --stream-normalization auto"
          + (". A model trained on whole recordings often needs a longer window (more --n-patches) for its window "
             "statistics to approach the recording's: the 4th-place BiGRU streams within 1 pp at 60 s, not at 20 s "
             "(docs/daemon.md)" if declared == "recording" else "") + ".\n",
          file=sys.stderr, flush=True)
