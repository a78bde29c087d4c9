"""A `models.py` in the user's working folder must not shadow the toolkit's own `models` package (issue 13).

The export runs in a fresh interpreter started the way the `toolkit` console script starts one (a launcher file in
another folder, so the working folder is not put first on sys.path by Python itself), from a folder that holds a
`models.py` with the factory and a sibling module that factory imports.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toolkit.export.source import import_user_module

REPO = Path(__file__).resolve().parents[1]

USER_MODELS = textwrap.dedent('''
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


@pytest.fixture
def user_folder(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "models.py").write_text(USER_MODELS)
    (folder / "blocks.py").write_text("def width():\n    return 8\n")
    return folder


def test_user_models_py_loads_under_a_private_name(user_folder):
    import models as toolkit_models
    module = import_user_module("models", user_folder)
    assert Path(module.__file__) == user_folder / "models.py"
    assert module.__name__ != "models" and sys.modules["models"] is toolkit_models
    assert hasattr(toolkit_models, "create_model") and callable(module.build)


def test_export_from_a_folder_with_models_py(user_folder, tmp_path):
    launcher = tmp_path / "bin" / "toolkit"
    launcher.parent.mkdir()
    launcher.write_text("import sys\nfrom toolkit.cli import main\nsys.exit(main())\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(launcher), "export", "--model", "models:build", "--target", "cpu",
                           "--n-patches", "64", "--calib-windows", "8", "--verify-windows", "4", "--no-fidelity",
                           "--out", "bundle", "--quiet"], cwd=user_folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not a package" not in done.stderr
    manifest = json.loads((user_folder / "bundle" / "manifest.json").read_text())
    assert manifest["model"]["source"] == "user" and manifest["model"]["factory"]["path"] == "models:build"
    assert manifest["model"]["parameters"] == 3 * 8 + 8 + 8 * 3 + 3
    assert manifest["verification"]["pairs"]["torch_vs_ort_fp32"]["passed"]
