"""Every stream normalization of deploy.wearer on a bundle, against the model offline under its declared
normalization (deploy.fidelity), on given recordings: the figures behind the choice export makes.

  python benchmarks/stream_normalization.py --bundle B ../shared/data/mobgap-walking --mapping mobgap
  python benchmarks/stream_normalization.py --bundle B --synthetic 2 --lookahead-s 20
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from calibration.data import recordings_from_args
from deploy.bundle import Bundle
from deploy.contract import STREAM_NORMALIZATIONS
from deploy.contract.events import EventSettings
from deploy.contract.runtime import StreamingSection
from deploy.engines import open_engine
from deploy.fidelity import Fidelity
from toolkit.commands._recordings import add_recording_arguments
from toolkit.export.streaming import fidelity_recordings, fixed_statistics, measure_options


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_recording_arguments(p)
    p.add_argument("--seed", type=int, default=4000)
    p.add_argument("--bundle", required=True)
    p.add_argument("--lookahead-s", type=float, help="override the manifest's look-ahead (both sides)")
    p.add_argument("--modes", default=",".join(STREAM_NORMALIZATIONS))
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    bundle = Bundle.load(args.bundle)
    spec = bundle.input.spec
    events = EventSettings.resolve(bundle.events, {"lookahead_s": args.lookahead_s}, classes=bundle.classes)
    columns, rule = bundle.output.event_columns, bundle.output.any_fog
    engine = open_engine(bundle, backend="onnxruntime", threads=1)
    fid = Fidelity(spec, engine, bundle.classes, events, columns, rule)
    section = bundle.streaming or StreamingSection(declared=spec.normalization, tau_s=spec.running_tau_s)
    section = replace(section, fixed=section.fixed or fixed_statistics(spec, *fidelity_recordings()))
    recs = recordings_from_args(args)
    print(f"{len(recs)} recordings, {sum(r.duration_s for r in recs) / 60:.1f} min; declared "
          f"{spec.normalization}; hop {events.hop_s} s, look-ahead {events.lookahead_s} s; any-FOG {rule}")
    figures = {}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        figures[mode] = f = measure_options(fid, section, [mode], recs)[mode]
        print(f"{mode:<13} called FOG streamed {f['percent_time_called_fog_streamed']:6.2f} % offline "
              f"{f['percent_time_called_fog_offline']:6.2f} % ({f['difference_pp']:+.2f} pp)  agreement "
              f"{100 * f['decision_agreement']:5.1f} %  mean|dp| {f['mean_abs_prob_diff']:.3f}  any-FOG events "
              f"{f['events_streamed']} vs {f['events_offline']}  daemon events {f['daemon_events']} "
              f"(background {f['background_events']})  {time.perf_counter() - t0:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"events": events.to_dict(), "figures": figures}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
