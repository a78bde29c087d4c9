"""Cohort scoring: many recordings through one bundle, on this machine or on Ray (`toolkit score`, docs/score.md).

Modules: `api` (`score(...)`), `read` (finding recordings, Parquet in row groups), `worn` (not-worn detection),
`work` (the per-recording work every engine runs), `local` and `ray_engine` (the engines), `report` (tables, plot).
"""
from __future__ import annotations


def score(*args, **kwargs):
    """See toolkit.score.api.score."""
    from toolkit.score.api import score as _score
    return _score(*args, **kwargs)
