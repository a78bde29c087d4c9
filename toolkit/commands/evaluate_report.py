"""The table `toolkit evaluate` prints (deploy.scoring results, one row per scorer)."""
from __future__ import annotations

import math

from deploy.subjects import FROM_FILE, describe


def _f(value, fmt="6.3f", width=6):
    return f"{'-':>{width}s}" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, fmt)


def _labelled_row(name, a):
    return (f"{name[:44]:44s} {_f(a['ap'])} {_f(a.get('auroc'))} {_f(a['sensitivity_time'], '6.2f')} "
            f"{_f(a['specificity_time'], '6.2f')} {_f(a['sensitivity'], '6.2f')} "
            f"{_f(a['false_alarms_per_hour'], '7.1f', 7)} "
            f"{_f(a['latency_median_s'], '6.2f')} {_f(a['percent_time_called_fog'], '6.1f')} "
            f"{a['episodes_true']:4d} {a['false_alarms']:4d}")


def print_in_sample(identities) -> None:
    """Say which recordings the model was trained on (or whose person it was trained on): their figures are
    in-sample and do not show how it does on people it never saw."""
    seen = [i for i in identities if i.get("in_sample") == "recording"]
    people = [i for i in identities if i.get("in_sample") == "subject"]
    if seen:
        print(f"in-sample: {len(seen)} of {len(identities)} recordings are ones the model was trained on ("
              f"{', '.join(i['name'] for i in seen[:8])}{' ...' if len(seen) > 8 else ''}): their figures show "
              "fit, not how it does on people it never saw")
    if people:
        print(f"in-sample person: {len(people)} more recording(s) of people it was trained on ("
              f"{', '.join(sorted({str(i['subject']) for i in people}))})")


def print_table(recs, results, settings, per_recording: bool = False, identities=()) -> None:
    labelled = [r for r in recs if r.labels is not None]
    hours = sum(r.duration_s for r in recs) / 3600
    people = {r.meta.get("subject") or r.meta.get("name"): r.meta.get("subject_from") or FROM_FILE for r in recs}
    print(f"{len(recs)} recordings of {len(people)} subjects, {hours * 60:.1f} min ({len(labelled)} labelled); "
          f"events: on {settings.on}, off {settings.off}, hop {settings.hop_s} s, look-ahead {settings.lookahead_s} s")
    print(f"subjects: {describe(list(people.values()))}")
    print_in_sample(list(identities))
    if any("ap" in r for r in results):
        print(f"\nper class (recordings labelled with the three types)\n{'scorer':44s} {'mAP':>6s} {'SH':>6s} "
              f"{'Turn':>6s} {'Walk':>6s}")
        for r in results:
            if "ap" in r:
                a = r["ap"]
                print(f"{r['name'][:44]:44s} {_f(a['mean'])} {_f(a['StartHesitation'])} {_f(a['Turn'])} "
                      f"{_f(a['Walking'])}")
    if labelled:
        print(f"\nany FOG (labelled recordings)\n{'scorer':44s} {'AP':>6s} {'AUROC':>6s} {'sensT':>6s} {'specT':>6s} "
              f"{'epSens':>6s} {'FA/h':>7s} {'lat50':>6s} {'%FOG':>6s} {'eps':>4s} {'FA':>4s}")
        for r in results:
            print(_labelled_row(r["name"], r["any_fog"]))
    if len(labelled) < len(recs):
        print(f"\nno labels (declared FOG-free: every event is a false alarm)\n{'scorer':44s} {'hours':>6s} "
              f"{'events':>6s} {'FA/h':>7s} {'%FOG':>6s}")
        for r in results:
            u = r["unlabelled"]
            print(f"{r['name'][:44]:44s} {u['hours']:6.2f} {u['false_alarms']:6d} "
                  f"{_f(u['false_alarms_per_hour'], '7.1f', 7)} {_f(u['percent_time_called_fog'], '6.1f')}")
    if per_recording:
        width = max([24] + [len(str(row["name"])) for r in results for row in r["per_recording"]])
        print(f"\nper recording\n{'recording':{width}s} {'subject':8s} {'scorer':20s} {'AP':>6s} {'AUROC':>6s} "
              f"{'events':>6s} {'%FOG':>6s}")
        for r in results:
            for row in r["per_recording"]:
                print(f"{str(row['name']):{width}s} {str(row['subject'])[:8]:8s} {r['name'][:20]:20s} "
                      f"{_f(row.get('any_fog_ap'))} "
                      f"{_f(row.get('any_fog_auroc'))} {row['events']:6d} {_f(row['percent_time_called_fog'], '6.1f')}")


# thresholds printed from the default sweep (all of them go into --json and the plot)
SHOWN = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999)


def _point_cell(p, current: float, chosen: dict | None) -> str:
    found = f"{p['episodes_found']}/{p['episodes_true']}" if p["episodes_true"] else "-"
    mark = ">" if chosen is not None and chosen["on"] == p["on"] else "*" if p["on"] == current else " "
    fi = f" {p['freeze_index']:6.3g}" if "freeze_index" in p else ""
    return f"{_f(p['sensitivity'], '6.2f')} {found:>8s} {_f(p['false_alarms_per_hour'], '7.1f', 7)}{fi}{mark}"


def print_operating_points(operating_points: dict, at_fa: dict | None, all_rows: bool = False) -> None:
    """Each scorer's episode sensitivity, episodes found and false alarms per hour as its on-threshold moves
    (* = the threshold the tables above used, > = the one chosen for --at-fa-per-hour), then the choice."""
    if not operating_points:
        return
    names = list(operating_points)
    chosen = (at_fa or {}).get("chosen", {})
    by_on = {n: {p["on"]: p for p in operating_points[n]["points"]} for n in names}
    has_fi = {n: "freeze_index" in operating_points[n]["points"][0] for n in names}
    widths = {n: max(len(n), 24 + 7 * has_fi[n]) for n in names}
    rows = sorted({t for n in names for t in by_on[n]})
    keep = set(rows) if all_rows else ({t for t in rows if t in SHOWN} | {s["current"] for s in
                                                                           operating_points.values()})
    keep |= {c["on"] for c in chosen.values() if c}
    note = "" if all_rows else f"; {len(keep)} of {len(rows)} thresholds shown, all in --json and the --plot"
    print(f"\noperating points, any FOG (the on-threshold moved, off kept at min(off, on); * the tables above, "
          f"> chosen{note})")
    print(f"{'':8s}  " + "  ".join(f"{n[:widths[n]]:{widths[n]}s}" for n in names))
    print(f"{'on':>8s}  " + "  ".join((f"{'epSens':>6s} {'found':>8s} {'FA/h':>7s}" + f"{'FI':>7s}" * has_fi[n])
                                      .ljust(widths[n]) for n in names))
    for t in (t for t in rows if t in keep):
        print(f"{t:8.5g}  " + "  ".join(_point_cell(by_on[n][t], operating_points[n]["current"], chosen.get(n))
                                        .ljust(widths[n]) if t in by_on[n] else " " * widths[n] for n in names))
    if at_fa:
        print(f"\nat most {at_fa['target']:g} false alarms per hour on these recordings:")
        for name in names:
            print(f"  {name}: {_choice(chosen.get(name), operating_points[name]['points'])}")


def _choice(point, points) -> str:
    if point is None:
        best = min(points, key=lambda p: (p["false_alarms_per_hour"], p["on"]))
        return (f"no threshold of the sweep gets there (fewest: {best['false_alarms_per_hour']:.1f} FA/h at on "
                f"{best['on']:g}); pass finer --thresholds or accept a higher rate")
    fi = f" = freeze index {point['freeze_index']:.3g}" if "freeze_index" in point else ""
    found = (f"{point['episodes_found']} of {point['episodes_true']} episodes ({point['sensitivity']:.2f})"
             if point["episodes_true"] else "no labelled episodes")
    return (f"on {point['on']:g}{fi} (off {point['off']:g}): {found}, {point['false_alarms_per_hour']:.1f} "
            f"false alarms/h, {point['percent_time_called_fog']:.1f} % of the time called FOG")
