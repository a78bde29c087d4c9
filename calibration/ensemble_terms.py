"""Ensemble candidates of `calibration.blend_choice`: several LOSO runs' fold networks scored as one network.

A candidate given by `--ensemble RUN RUN ...` is one set of fold networks: in each fold, the members' networks (each
trained without the held-out person) see the same windows, their logits are averaged in float32, and the fixed
freeze-index blend is added once to that mean, as `models.ensemble.LogitMean` computes it in one graph. The
freeze-index terms do not depend on the network, so they are the first member's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def members(run) -> tuple:
    """The LOSO runs a candidate's run stands for: itself, or an ensemble's members (a tuple of runs)."""
    return run if isinstance(run, tuple) else (run,)


def ensemble_name(runs) -> str:
    """`loso-invariant-long-tremor-s0`, `...-s1`, `...-s2` -> `loso-invariant-long-tremor-x3`."""
    return f"{Path(runs[0]).name.rsplit('-s', 1)[0]}-x{len(runs)}"


def mean_calls(member_calls: list[list[tuple]]) -> list[tuple]:
    """Window batch by window batch, the members' (network logits, freeze-index term, power term): the logits
    averaged in float32, the terms of the first member."""
    sizes = {len(calls) for calls in member_calls}
    if len(sizes) != 1:
        raise ValueError(f"ensemble members predicted different numbers of window batches ({sorted(sizes)}): "
                         "were they trained on the same input spec?")
    out = []
    for batch in zip(*member_calls):
        nets = np.stack([b[0] for b in batch]).astype(np.float32)
        out.append((nets.mean(0, dtype=np.float32), batch[0][1], batch[0][2]))
    return out


def run_terms(run, weights_name: str, terms_of) -> tuple[list, object]:
    """(window terms, spec) of one fold network of `run`: `terms_of(member_run, weights_path)` for each member,
    averaged where `run` is an ensemble; members must share one input spec."""
    results = [terms_of(m, Path(m) / weights_name) for m in members(run)]
    specs = {json_key(spec) for _, spec in results}
    if len(specs) != 1:
        raise ValueError(f"ensemble members {members(run)} were trained on different inputs; an ensemble is one "
                         "input spec")
    if len(results) == 1:
        return results[0]
    return mean_calls([calls for calls, _ in results]), results[0][1]


def json_key(spec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)
