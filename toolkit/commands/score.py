"""Score a cohort: every recording through a bundle on the daemon's grid, with the bundle's event settings.

  toolkit score data/unlabeled --bundle bundles/fog-small --out runs/week1
  toolkit score cohort/ --bundle B --out runs/c --runner ray                    # a private local Ray instance
  toolkit score /shared/cohort --bundle B --out runs/c --runner ray --address auto   # a Ray cluster

Reads CSV layouts, npz, Daphnet text and Parquet (Kaggle's unlabeled/, read in row groups). Subjects are the people
the data names (deploy.subjects): daily_metadata.csv / metadata.csv beside or above the files (or --metadata), the
dataset's file names (Daphnet S02R01 -> S02, Stanford pt6_...), a participant_metadata.json naming the folders
(mobgap HA/001 -> HA-001); only when nothing names one is a file its own subject, and the output says so. Writes
into --out: events.csv/.parquet,
summary.csv/.parquet (per subject, visit and day: hours recorded, hours not worn, FOG minutes, episodes, longest),
recordings.csv/.parquet, fog_minutes_per_day.png, run.json, and parts/ (per-recording results by content hash: a
second run skips what is done; --quiet also leaves out the summary table). Stretches of an hour or more with a still sensor count as not worn and are not
scored (--not-worn-min). See docs/score.md.
"""
from __future__ import annotations

import argparse

from deploy.contract import event_help
from toolkit.commands._options import add_bundle, add_quiet
from toolkit.score.api import RUNNERS

HELP = "score a cohort's recordings with a bundle: events, per-subject-per-day summary, plot (local or Ray)"


def add_arguments(p) -> None:
    p.add_argument("data", nargs="+", help="recordings (.csv, .npz, .parquet, Daphnet .txt, Stanford .xlsx) or folders "
                   "of them")
    add_bundle(p, required=True)
    p.add_argument("--out", required=True, help="output folder (created; re-running resumes)")
    p.add_argument("--runner", choices=RUNNERS, default="local",
                   help="where the recordings are scored: local: worker processes on this machine (default); ray: "
                        "Ray Data actors")
    p.add_argument("--engine", dest="runner", choices=RUNNERS, help=argparse.SUPPRESS)   # the old spelling
    p.add_argument("--jobs", type=int, help="local: worker processes (default: one per core); ray without "
                   "--address: CPUs of the private instance")
    p.add_argument("--address", help="ray: cluster address ('auto', 'ray://host:10001'); default a private instance")
    p.add_argument("--actors", type=int, help="ray: engines (actors), default one per CPU of the cluster")
    p.add_argument("--metadata", help="CSV with Id, Subject (Visit, 'Beginning of recording') for the files")
    p.add_argument("--backend", default="onnxruntime", choices=("auto", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"))
    p.add_argument("--hop-s", type=float, help=event_help("hop_s"))
    p.add_argument("--lookahead-s", help=event_help("lookahead_s"))
    p.add_argument("--not-worn-min", type=float, default=60.0,
                   help="shortest still stretch counted as not worn, minutes (default 60; 0 = off)")
    p.add_argument("--chunk-min", type=float, default=10.0, help="minutes of signal read at a time (default 10)")
    p.add_argument("--no-resume", action="store_true", help="score everything again")
    add_quiet(p)


def run(args) -> int:
    import sys

    from deploy.subjects import FROM_FILE, describe
    from toolkit.cli import UserError
    from toolkit.score.api import score_cohort
    from toolkit.score.report import format_summary
    from toolkit.score.worn import WornSettings

    if args.not_worn_min < 0 or args.chunk_min <= 0:
        raise UserError("--not-worn-min must be >= 0 and --chunk-min > 0")
    if args.address and args.runner != "ray":
        raise UserError("--address is for --runner ray")
    look = args.lookahead_s
    if look is not None and look != "full":
        try:
            look = float(look)
        except ValueError:
            raise UserError(f"--lookahead-s takes seconds or 'full', not {look!r}") from None
    result = score_cohort(args.data, args.bundle, runner=args.runner, out=args.out, jobs=args.jobs,
                          address=args.address, actors=args.actors, metadata=args.metadata, backend=args.backend,
                          precision=args.precision, hop_s=args.hop_s, lookahead_s=look,
                          worn=WornSettings(min_s=args.not_worn_min * 60), chunk_s=args.chunk_min * 60,
                          resume=not args.no_resume, progress=not args.quiet)
    if not args.quiet:
        print(format_summary(result.summary))
    rate = f", {result.hours_per_second:.2f} h of signal per second" if result.scored else ""
    people = {r["subject"]: r.get("subject_from") or FROM_FILE for r in result.recordings}
    print(f"{len(result.recordings)} recordings of {len(people)} subjects ({result.scored} scored, "
          f"{result.resumed} resumed{rate}), {len(result.events)} events -> {args.out}")
    print(f"subjects: {describe(list(people.values()))}")
    for warning in result.warnings:
        print(f"toolkit score: warning: {warning}", file=sys.stderr)
    for e in result.errors:
        print(f"toolkit score: could not score {e['path']}: {e['error']}", file=sys.stderr)
    if result.errors:
        print(f"toolkit score: {len(result.errors)} recording(s) failed (listed in {args.out}/errors.csv); fix them "
              "and run again: what was scored is kept", file=sys.stderr)
        return 1
    return 0
