"""Seed ensembles from networks trained one by one (`models.ensemble.LogitMean`).

  python -m calibration.ensemble_weights --preset fog-small-x3 --out models/weights/fog-small-x3.pt \
      runs/final-s0/model.pt runs/final-s1/model.pt runs/final-s2/model.pt

Each member is a checkpoint of the ensemble's member network (the preset's `member` class and keyword arguments;
`calibration.loso --final` writes one per seed). The ensemble's weights are written in the bundled (plain) form,
with a JSON beside them: the first member's (its training data: every member was trained on the same
recordings), each member's seed, wall time and synthetic subjects, and the synthetic subjects of all of them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calibration.checkpoint import checkpoint_info, fit_weights, read_weights, save_checkpoint


def mean_of_networks(member_preset: str, state_dicts: list, **overrides):
    """A `LogitMean` of len(state_dicts) networks of `member_preset` (a single-network preset, e.g. fog-small, with
    `overrides` of its keywords): the fixed parts (freeze-index blend, window z-score) as the preset has them."""
    from models import get_preset
    from models.ensemble import LogitMean
    preset = get_preset(member_preset)
    model = LogitMean(member=preset.factory.__name__, n_members=len(state_dicts), **{**preset.kwargs, **overrides})
    return model.load_members(state_dicts).eval()


def build(preset_name: str, members: list[str]):
    """(the ensemble preset's model with the members' weights, its JSON) for `members` (checkpoint paths)."""
    from models import create_model, get_preset
    n = get_preset(preset_name).kwargs.get("n_members")
    if n is None:
        raise SystemExit(f"{preset_name} is not an ensemble preset (no n_members); see `toolkit models`")
    if len(members) != n:
        raise SystemExit(f"{preset_name} has {n} members; {len(members)} checkpoints given")
    model = create_model(preset_name)
    for net, path in zip(model.members, members):
        fit_weights(net, read_weights(path)[0], path, f"each member must be a network of {preset_name}'s member "
                    f"({model.member} with the preset's keywords)")
    model.eval()
    infos = [checkpoint_info(p) for p in members]
    info = {**infos[0], "preset": preset_name,
            "members": [{"checkpoint": str(p), "seed": i.get("seed"), "seconds": i.get("seconds")}
                        for p, i in zip(members, infos)],
            "synthetic_train_subjects": sorted({s for i in infos for s in i.get("synthetic_train_subjects", [])})}
    info.pop("seed", None)
    info["seconds"] = sum(float(i.get("seconds") or 0) for i in infos)
    return model, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.ensemble_weights", description=__doc__.split("\n\n")[0])
    p.add_argument("members", nargs="+", help="the members' checkpoints, in order")
    p.add_argument("--preset", required=True, help="the ensemble preset (e.g. fog-small-x3)")
    p.add_argument("--out", required=True, help="the ensemble's weights (.pt; the JSON is written beside them)")
    args = p.parse_args(argv)
    model, info = build(args.preset, args.members)
    save_checkpoint(model, args.out, info, plain=True)
    print(f"{args.out}: {args.preset} from {len(args.members)} members", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
