"""Shared test fixtures: where ../shared is, and a skip when it is absent."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOG_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared; skips the calling test cleanly when it is absent (a user's fresh clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not part of a user's clone)")
    return path


@pytest.fixture
def mobgap_dir() -> Path:
    return shared_path("data", "mobgap-walking")


@pytest.fixture
def fourth_place_dir() -> Path:
    return shared_path("models", "fourth-place-bigru")


@pytest.fixture
def daphnet_dir() -> Path:
    return shared_path("data", "daphnet")


DEFAULT_WEIGHTS = REPO / "models" / "weights" / "fog-small-x3.pt"   # the bundled default (calibration.checkpoint)


@pytest.fixture(scope="session")
def default_bundle(tmp_path_factory):
    """The trained default as a bundle (`toolkit export`, cpu target, fp32: ~25 s), or None without its weights."""
    if not DEFAULT_WEIGHTS.is_file():
        return None
    out = tmp_path_factory.mktemp("default") / "bundle"
    result = subprocess.run([sys.executable, "-m", "toolkit.cli", "export", "--target", "cpu", "--precision", "fp32",
                             "--out", str(out), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr[-2000:]
    return out
