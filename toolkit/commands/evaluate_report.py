"""The table `toolkit evaluate` prints (deploy.scoring results, one row per scorer)."""
from __future__ import annotations

import math


def _f(value, fmt="6.3f", width=6):
    return f"{'-':>{width}s}" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, fmt)


def _labelled_row(name, a):
    return (f"{name[:44]:44s} {_f(a['ap'])} {_f(a.get('auroc'))} {_f(a['sensitivity_time'], '6.2f')} "
            f"{_f(a['specificity_time'], '6.2f')} {_f(a['sensitivity'], '6.2f')} "
            f"{_f(a['false_alarms_per_hour'], '7.1f', 7)} "
            f"{_f(a['latency_median_s'], '6.2f')} {_f(a['percent_time_called_fog'], '6.1f')} "
            f"{a['episodes_true']:4d} {a['false_alarms']:4d}")


def print_table(recs, results, settings, per_recording: bool = False) -> None:
    labelled = [r for r in recs if r.labels is not None]
    hours = sum(r.duration_s for r in recs) / 3600
    print(f"{len(recs)} recordings, {hours * 60:.1f} min ({len(labelled)} labelled); events: on {settings['on']}, "
          f"off {settings['off']}, hop {settings['hop_s']} s, look-ahead {settings['lookahead_s']} s")
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
        print(f"\nper recording\n{'recording':24s} {'scorer':20s} {'AP':>6s} {'AUROC':>6s} {'events':>6s} "
              f"{'%FOG':>6s}")
        for r in results:
            for row in r["per_recording"]:
                print(f"{str(row['name'])[:24]:24s} {r['name'][:20]:20s} {_f(row.get('any_fog_ap'))} "
                      f"{_f(row.get('any_fog_auroc'))} {row['events']:6d} {_f(row['percent_time_called_fog'], '6.1f')}")
