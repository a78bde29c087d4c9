"""The tables and lines `calibration.blend_choice` prints: per held-out subject, nested, pooled per lab, the choice."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deploy.scoring import json_safe

TIE = 1e-4   # margins equal to this are a tie (the larger mean margin wins)


def mean_of(values):
    values = [v for v in values if v is not None and v == v]
    return float(np.mean(values)) if values else None


def cell(value, fmt):
    return "-" if value is None or value != value else format(value, fmt)


def subject_table(rows: dict, setting_column: bool = False) -> str:
    head = "| held out | lab | episodes | " + ("network / blend / power / on | " if setting_column else "") + \
        "AP model / FI | AUROC model / FI | episode sens. model / FI | false alarms/h model / FI |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for s, m in rows.items():
        setting = f"{m['network']} / {m['fi_blend']:g} / {m['power_weight']:g} / {m['on']:g} | " if setting_column \
            else ""
        lines.append(f"| {s} | {m['lab']} | {m['episodes']} | {setting}{cell(m['ap'], '.3f')} / "
                     f"{cell(m['fi_ap'], '.3f')} | {cell(m.get('auroc'), '.3f')} / {cell(m.get('fi_auroc'), '.3f')} | "
                     f"{cell(m['sensitivity'], '.2f')} / "
                     f"{cell(m['fi_sensitivity'], '.2f')} | {cell(m['false_alarms_per_hour'], '.1f')} / "
                     f"{cell(m['fi_false_alarms_per_hour'], '.1f')} |")
    return "\n".join(lines)


def print_choice(chosen: dict, per_subject: dict, held_out: dict, held_out_labs: dict, preset) -> None:
    """The chosen setting's table, the nested table, the pooled lines, and whether `preset` ships the choice."""
    print(subject_table(per_subject))
    for name, f in chosen["labs"].items():
        print(f"{name} pooled: AP {f['ap']:.3f} (FI {f['fi_ap']:.3f}), AUROC {cell(f['auroc'], '.3f')} (FI "
              f"{cell(f['fi_auroc'], '.3f')}), episode sensitivity {cell(f['sensitivity'], '.2f')}, "
              f"false alarms/h {f['false_alarms_per_hour']:.1f} (FI {f['fi_false_alarms_per_hour']:.1f})")
    print("\nThe same rule, nested: each subject scored at the setting chosen on the other subjects only")
    print(subject_table(held_out, setting_column=True))
    for name, f in held_out_labs.items():
        print(f"{name} pooled, nested: AP {f['ap']:.3f} (FI {f['fi_ap']:.3f}), AUROC {cell(f['auroc'], '.3f')} (FI "
              f"{cell(f['fi_auroc'], '.3f')}), episode sensitivity "
              f"{cell(f['sensitivity'], '.2f')} (FI {cell(f['fi_sensitivity'], '.2f')}), false alarms/h "
              f"{f['false_alarms_per_hour']:.1f} (FI {f['fi_false_alarms_per_hour']:.1f})")
    print(f"chosen: network {chosen['network']}, fi_blend {chosen['fi_blend']}, power_weight {chosen['power_weight']},"
          f" on {chosen['on']:g} (off {chosen['off']:g}): worst-lab AP margin {chosen['worst_lab_margin']:+.3f}"
          + ("" if chosen["walking_false_alarms_per_hour"] is None else
             f"; {chosen['walking_false_alarms_per_hour']:.1f} false alarms/h on the walking recordings"))
    shipped = (preset.kwargs.get("fi_blend"), preset.kwargs.get("fi_kwargs", {}).get("power_weight"),
               preset.events.get("on"))
    mine = (chosen["fi_blend"], chosen["power_weight"], chosen["on"])
    print(f"preset {preset.name} ships fi_blend, power_weight, on = {shipped}: "
          + ("the choice" if shipped == mine else f"NOT the choice {mine}: edit models/registry.py"))


def screen(candidates: dict, fi, out) -> int:
    """Step 1 of the rule: per candidate, each lab's pooled AP (mean over its runs), the margins over the freeze
    index, the worst-lab margin; each network's best candidate first."""
    rows = []
    for (network, blend, power), runs in candidates.items():
        aps = {lab: float(np.mean([r.lab_ap[lab][""] for r in runs])) for lab in sorted(fi.lab_ap)}
        margins = [aps[lab] - fi.lab_ap[lab][""] for lab in aps]
        rows.append({"network": network, "fi_blend": blend, "power_weight": power, "ap": aps,
                     "auroc": {lab: mean_of([(r.auroc or {}).get(lab) for r in runs]) for lab in aps},
                     "worst_lab_margin": min(margins), "mean_lab_margin": float(np.mean(margins))})
    rows.sort(key=lambda r: (-round(r["worst_lab_margin"] / TIE), -r["mean_lab_margin"]))
    best = {}
    for r in rows:
        best.setdefault(r["network"], r)
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "screen.json").write_text(json.dumps(json_safe({"freeze_index": {lab: fi.lab_ap[lab][""] for lab in
                                                                               fi.lab_ap}, "best": best,
                                                              "rows": rows}), indent=1) + "\n")
    for r in best.values():
        print(f"{r['network']}: best fi_blend {r['fi_blend']:g} power {r['power_weight']:g}: "
              + ", ".join(f"{lab} AP {ap:.3f}" for lab, ap in r["ap"].items())
              + f"; worst-lab margin {r['worst_lab_margin']:+.3f}")
    return 0
