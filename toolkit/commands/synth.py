"""Write seeded synthetic lower-back recordings with labelled freezing-of-gait episodes (deploy.synth).

One file:      toolkit synth --minutes 5 --seed 3 --layout tdcsfog --out s3.csv
A dataset:     toolkit synth --subjects 8 --minutes 5 --out-dir data/synth     (+ metadata.csv, subjects.json)
tdcsfog files are 128 Hz in m/s^2, defog and npz files 100 Hz in g. --daily lowers the freezing rate (home-like)
instead of the FOG-provoking protocol (about 10-20 % of the time frozen).
"""
from __future__ import annotations

import sys

from deploy.recording import write_recording
from deploy.synth import LAYOUT_RATES, synth_dataset, synth_recording
from toolkit.cli import UserError
from toolkit.commands._options import add_file_layout

HELP = "write seeded synthetic recordings with labelled FOG episodes"


def add_arguments(p) -> None:
    p.add_argument("--minutes", "--synthetic-minutes", dest="synthetic_minutes", type=float, default=5.0,
                   help="length of each recording (default 5)")
    p.add_argument("--seed", type=int, default=0)
    add_file_layout(p, default="defog", choices=["tdcsfog", "defog", "npz"])
    p.add_argument("--out", help="write one recording to this file")
    p.add_argument("--subjects", type=int, help="write a dataset folder with this many subjects (--out-dir)")
    p.add_argument("--recordings", type=int, default=1, help="recordings per subject in a dataset (default 1)")
    p.add_argument("--out-dir", help="dataset folder")
    p.add_argument("--daily", action="store_true", help="daily-life mode: far fewer freezes")


def run(args) -> int:
    if args.synthetic_minutes <= 0:
        raise UserError("--minutes must be positive")
    if (args.out is None) == (args.out_dir is None):
        raise UserError("give exactly one of --out FILE (one recording) or --out-dir DIR with --subjects N")
    if args.out:
        rate, units = LAYOUT_RATES[args.layout]
        rec = synth_recording(args.synthetic_minutes, seed=args.seed, rate_hz=rate, units=units, protocol=not args.daily)
        write_recording(rec, args.out, args.layout)
        frozen = 100 * rec.labels.max(1).mean()
        print(f"wrote {args.out}: {rec.duration_s / 60:.1f} min at {rate:g} Hz in {units}, "
              f"{len(rec.meta['episodes'])} FOG episodes, {frozen:.1f} % of the time frozen")
        return 0
    if not args.subjects or args.subjects < 1:
        raise UserError("--out-dir needs --subjects N (N >= 1)")

    def progress(done, total):
        print(f"\rsynth: {done}/{total} recordings", end="" if done < total else "\n", file=sys.stderr)

    paths = synth_dataset(args.out_dir, subjects=args.subjects, minutes=args.synthetic_minutes, seed=args.seed,
                          layout=args.layout, recordings_per_subject=args.recordings, progress=progress)
    print(f"wrote {len(paths)} recordings, metadata.csv and subjects.json to {args.out_dir}")
    return 0
