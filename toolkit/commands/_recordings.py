"""The recording inputs `toolkit train`, `calibrate` and `evaluate` share: files/folders, or seeded synthetic
subjects (`calibration.data.recordings_from_args` turns them into recordings)."""
from __future__ import annotations

from toolkit.commands._options import add_file_layout


def add_recording_arguments(p, *, per_subject: int = 1) -> None:
    p.add_argument("data", nargs="*", help="recordings (.csv, .npz, Daphnet .txt, Stanford .xlsx) or folders of them "
                   "(searched recursively; metadata files skipped)")
    p.add_argument("--synthetic", type=int, metavar="N", help="use N seeded synthetic subjects instead of files "
                   "(subject ids carry --seed, so sets drawn with different seeds share no subject)")
    p.add_argument("--synthetic-minutes", "--minutes", dest="synthetic_minutes", type=float, default=5.0,
                   help="minutes per synthetic recording (default 5)")
    p.add_argument("--synthetic-per-subject", type=int, default=per_subject,
                   help=f"synthetic recordings per subject (default {per_subject})")
    add_file_layout(p)
    p.add_argument("--mapping", help="column mapping for other CSVs (e.g. mobgap)")
