"""A user's files never shadow the toolkit's packages (issues 13 and 27).

The user's folder holds the factory (`mynet.py`, which imports a sibling `blocks.py`) and files named like the
toolkit's own top-level packages (`models.py`, `deploy.py`, `toolkit.py`, `calibration.py`) that RAISE when imported:
an export that imports any of them fails loudly instead of passing by luck.

The export runs the way an installed `toolkit` command runs it: a launcher script in another folder (so Python does
not put the working folder first), the toolkit found through a meta-path finder that comes AFTER sys.path's own
finder, as a `pip install -e` (setuptools' editable finder) places it, not through PYTHONPATH (which would put the
toolkit ahead of the user's folder and hide the bug).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toolkit.export.source import TOOLKIT_PACKAGES, import_user_module

REPO = Path(__file__).resolve().parents[1]

USER_NET = textwrap.dedent('''
    import torch
    from torch import nn
    from blocks import width          # a sibling file of the user's, found through the working folder

    class PerSample(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, width()), nn.ReLU(), nn.Linear(width(), 3))

        def forward(self, x):          # (B, T, 3) -> (B, T, 3) logits
            return self.body(x)

    def build():
        torch.manual_seed(7)
        return PerSample()
''')

# The toolkit found as an editable install finds it: a meta-path finder after sys.path's PathFinder.
LAUNCHER = textwrap.dedent('''
    import sys
    from importlib.machinery import PathFinder
    REPO, TOP = {repo!r}, {top!r}

    class AfterSysPath:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            return PathFinder.find_spec(name, [REPO]) if name in TOP else None

    sys.meta_path.insert(sys.meta_path.index(PathFinder) + 1, AfterSysPath)
    sys.path[:] = [p for p in sys.path if p.rstrip("/") != REPO]
    from toolkit.cli import main
    assert main.__code__.co_filename.startswith(REPO), main.__code__.co_filename
    sys.exit(main())
''')


@pytest.fixture
def user_folder(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "mynet.py").write_text(USER_NET)
    (folder / "blocks.py").write_text("def width():\n    return 8\n")
    for name in TOOLKIT_PACKAGES:
        (folder / f"{name}.py").write_text(f"raise RuntimeError('the user\\'s {name}.py was imported in place of "
                                           f"the toolkit\\'s {name} package')\n")
    return folder


def test_the_toolkit_packages_are_what_the_project_installs():
    import tomllib
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert set(TOOLKIT_PACKAGES) == {name.rstrip("*") for name in include}


def test_user_models_py_loads_under_a_private_name(tmp_path):
    import models as toolkit_models
    folder = tmp_path / "own"
    folder.mkdir()
    (folder / "models.py").write_text("def build():\n    return 'mine'\n")
    module = import_user_module("models", folder)
    assert Path(module.__file__) == folder / "models.py" and module.build() == "mine"
    assert module.__name__ != "models" and sys.modules["models"] is toolkit_models
    assert hasattr(toolkit_models, "create_model")


def test_export_from_a_folder_with_files_named_like_the_toolkits_packages(user_folder, tmp_path):
    launcher = tmp_path / "bin" / "toolkit"
    launcher.parent.mkdir()
    launcher.write_text(LAUNCHER.format(repo=str(REPO), top=list(TOOLKIT_PACKAGES)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(launcher), "export", "--model", "mynet:build", "--target", "cpu",
                           "--n-patches", "64", "--calib-windows", "8", "--verify-windows", "4", "--no-fidelity",
                           "--out", "bundle", "--quiet"], cwd=user_folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "was imported in place of" not in done.stderr
    manifest = json.loads((user_folder / "bundle" / "manifest.json").read_text())
    assert manifest["model"]["source"] == "user" and manifest["model"]["factory"]["path"] == "mynet:build"
    assert manifest["model"]["parameters"] == 3 * 8 + 8 + 8 * 3 + 3
    assert manifest["verification"]["pairs"]["torch_vs_ort_fp32"]["passed"]
