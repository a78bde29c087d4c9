"""Cohort scoring: many recordings through one bundle, on this machine or on Ray (`toolkit score`, docs/score.md).

Modules: `api` (`score_cohort(...)`), `read` (finding recordings, Parquet in row groups), `worn` (not-worn
detection), `work` (the per-recording work every runner does), `local` and `ray_runner` (where it runs: this
machine's worker processes, or Ray Data), `report` (tables, plot).
"""
from __future__ import annotations


def score_cohort(*args, **kwargs):
    """See toolkit.score.api.score_cohort."""
    from toolkit.score.api import score_cohort as _score_cohort
    return _score_cohort(*args, **kwargs)
