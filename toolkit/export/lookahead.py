"""Look-ahead as a measured choice: the user's model streamed through the daemon's pipeline (with the stream
normalization export chose) at several look-aheads, each against the model offline at the same look-ahead, and
against the stream with whole windows; one is recommended by a written rule and goes into the manifest's
`events.lookahead_s` unless the user set one.

The look-ahead is how long a sample's probability waits for later windows before it is decided (deploy.offline):
more of it averages more windows over each sample (a bidirectional model sees context on both sides), and delays
every decision, hence every cue, by as much. The figures per look-ahead (`sweep`): time called FOG streamed and
offline, their decision agreement, time called FOG on FOG-free samples, and the share of samples decided as the
whole-window stream decides them.

The rule (`recommend`): the smallest look-ahead whose stream calls FOG where the whole-window stream does, that is
whose samples inside events overlap the whole-window stream's by at least OVERLAP (intersection over union; two
streams that call nothing agree) and whose time called FOG is within TOLERANCE_PP percentage points of it: past it,
more look-ahead no longer changes what the device says, only how late it says it (whole windows always qualify).
The overlap, not the share of agreeing samples, because fidelity data with little FOG makes every stream agree on
almost every sample. Measured on the streams, not on offline, so a normalization that cannot stream exactly (a model
trained on whole recordings) does not push every recommendation to whole windows: what streaming costs is in the
offline columns beside it. A look-ahead the user (or the preset, whose thresholds were chosen with it) set is
used whatever the rule says; the table says both.
"""
from __future__ import annotations

from deploy.contract import EVENT_DEFAULTS
from deploy.contract.events import FULL, EventSettings
from deploy.fidelity import called, compare, fog_free, pool
from deploy.offline import contribution

LOOKAHEADS_S = (0.5, 1.0, 2.0, 4.0, FULL)
TOLERANCE_PP = 1.0     # |time called FOG(L) - time called FOG(whole windows)|, streamed, percentage points
OVERLAP = 0.75         # samples called by both / by either, L against whole windows
RULE = (f"the smallest look-ahead whose FOG calls overlap the whole-window stream's by >= {100 * OVERLAP:g} % "
        f"(intersection over union) with time called FOG within {TOLERANCE_PP:g} pp of it")


def label(lookahead) -> str:
    """The key of a look-ahead in the manifest's table: "0.5", "1", "full"."""
    return FULL if lookahead == FULL else f"{float(lookahead):g}"


def candidates(asked=None) -> list:
    """The look-aheads measured: the standard ones, and the user's own when it is not among them."""
    out = list(LOOKAHEADS_S)
    if asked is not None and label(asked) not in {label(x) for x in out}:
        out.insert(-1, float(asked))
        out[:-1] = sorted(out[:-1])
    return out


def sweep(fid, recordings, spec, session=None, lookaheads=LOOKAHEADS_S) -> dict:
    """{label: pooled figures} of streaming `recordings` (deploy.fidelity.Fidelity `fid`, stream `spec`, normalizer
    `session`) at each look-ahead, the whole-window stream first (the others are compared with it)."""
    rate = fid.spec.rate_hz
    order = sorted(lookaheads, key=lambda x: x != FULL)          # whole windows first
    whole, out = None, {}
    for lookahead in order:
        look = EventSettings(lookahead_s=lookahead).lookahead_samples(rate)
        items, masks, background, daemon = [], [], 0, 0
        for i, (rec, (streamed, events)) in enumerate(zip(recordings, fid.streamed(recordings, spec, session, look))):
            offline = fid.offline(i, rec, look)
            items.append(compare(offline, streamed, rate, fid.detection, fog_free(rec, len(offline), rate)))
            masks.append(called(streamed, rate, fid.detection)[0])
            daemon += len(events)
            background += sum(ev.cls not in fid.detection.detector_classes for ev in events)
        figures = pool(items, background, daemon)
        whole = whole or (masks, figures)
        n = sum(len(m) for m in masks)
        same = sum(int((m == w[:len(m)]).sum()) for m, w in zip(masks, whole[0]))
        both = sum(int((m & w[:len(m)]).sum()) for m, w in zip(masks, whole[0]))
        either = sum(int((m | w[:len(m)]).sum()) for m, w in zip(masks, whole[0]))
        figures.update(lookahead_s=lookahead, decided_after_samples=contribution(fid.spec.window, fid.hop, look),
                       agreement_with_whole_window=same / max(1, n),
                       overlap_with_whole_window=both / either if either else 1.0,
                       difference_to_whole_window_pp=figures["percent_time_called_fog_streamed"]
                       - whole[1]["percent_time_called_fog_streamed"])
        out[label(lookahead)] = figures
    return {k: out[k] for k in map(label, lookaheads)}             # in the order asked


def recommend(table: dict) -> tuple[str, str]:
    """(the label `RULE` picks from a `sweep` table, why). No stream that calls FOG at all gives the rule nothing to
    go by: the contract's default look-ahead then, said so."""
    if not any(f["percent_time_called_fog_streamed"] for f in table.values()):
        return label(EVENT_DEFAULTS["lookahead_s"]), ("no look-ahead's stream called FOG on the fidelity data: "
                                                      "nothing to choose by, the default kept")
    for key, f in table.items():
        if abs(f["difference_to_whole_window_pp"]) <= TOLERANCE_PP and f["overlap_with_whole_window"] >= OVERLAP:
            return key, "the rule"
    return FULL, "the rule"


def section(table: dict, normalization: str, asked=None) -> dict:
    """The manifest's `streaming.lookahead`: the table, the rule, the recommendation, and what the bundle uses."""
    recommended, why = recommend(table)
    chosen = label(asked) if asked is not None else recommended
    return {"measured_with": normalization, "options": table, "rule": RULE, "tolerance_pp": TOLERANCE_PP,
            "overlap": OVERLAP, "recommended": recommended, "chosen": chosen,
            "chosen_by": "set (--lookahead-s or the preset)" if asked is not None else f"recommended ({why})"}


def as_setting(key: str):
    """A table label back as the manifest's events.lookahead_s value."""
    return FULL if key == FULL else float(key)


def lines(lookahead: dict) -> list[str]:
    """The export summary's look-ahead table."""
    out = [f"  look-ahead ({lookahead['measured_with']} normalization; rule: {lookahead['rule']}; used "
           f"{lookahead['chosen']} s: {lookahead['chosen_by']}):"]
    for key, f in lookahead["options"].items():
        free = f.get("percent_fog_free_called_streamed")
        mark = " <- recommended" if key == lookahead["recommended"] else ""
        mark += " (used)" if key == lookahead["chosen"] else ""
        out.append(f"    {key:>5}{' s' if key != FULL else '  '}  time called FOG {f['percent_time_called_fog_streamed']:6.2f} % streamed vs "
                   f"{f['percent_time_called_fog_offline']:6.2f} % offline, agreement "
                   f"{100 * f['decision_agreement']:5.1f} %, overlap with whole windows "
                   f"{100 * f['overlap_with_whole_window']:5.1f} %"
                   + (f", FOG-free time called {free:.2f} %" if free is not None else "") + mark)
    return out
