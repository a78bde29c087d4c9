"""A missing optional package is named the right way (issue 27): the package that is really missing, the extra that
installs it, JetPack (not pip) for TensorRT on a Jetson, never `pip install models`; and what shows no progress bar
never needs tqdm."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from calibration import progress as bars
from deploy import errors
from deploy.errors import FogError, MissingDependency
from deploy.lazy import lazy_import, require
from tests.helpers_bundle import make_bundle

REPO = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """Modules of a user's on sys.path: one needing a package nobody has, one raising ImportError inside."""
    (tmp_path / "fog_needs_absent.py").write_text("import fog_absent_package\n")
    (tmp_path / "fog_broken_inside.py").write_text("from json import no_such_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("fog_needs_absent", "fog_broken_inside"):
        sys.modules.pop(name, None)


def test_a_module_whose_dependency_is_missing_names_that_dependency(user_modules):
    with pytest.raises(MissingDependency, match="'fog_absent_package' package") as caught:
        require(lazy_import("fog_needs_absent", "workstation", "the thing"))
    assert "pip install fog_needs_absent" not in str(caught.value)


def test_an_import_failing_inside_is_not_called_missing(user_modules):
    with pytest.raises(FogError, match="importing 'fog_broken_inside' failed") as caught:
        require(lazy_import("fog_broken_inside", "workstation", "the thing"))
    assert not isinstance(caught.value, MissingDependency)


def test_the_toolkits_own_packages_are_never_pip_installed_by_name():
    with pytest.raises(FogError, match="reinstall fog-edge-toolkit") as caught:
        require(lazy_import("models.no_such_module", "workstation", "the thing"))
    assert "pip install models" not in str(caught.value)


def test_tensorrt_on_a_jetson_comes_from_jetpack(monkeypatch):
    monkeypatch.setattr(errors, "on_jetson", lambda: True)
    text = str(MissingDependency("tensorrt", "tensorrt", "the TensorRT engine"))
    assert "JetPack" in text and "pip install" not in text
    monkeypatch.setattr(errors, "on_jetson", lambda: False)
    text = str(MissingDependency("tensorrt", "tensorrt", "the TensorRT engine"))
    assert "JetPack" in text and "fog-edge-toolkit[tensorrt]" in text


def test_no_bar_needs_no_tqdm_and_a_terminal_is_told_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)          # tqdm not installed
    monkeypatch.setattr(bars, "_said_no_tqdm", [])
    monkeypatch.setattr(sys, "stderr", io.StringIO())       # a log, a pipe: no bar wanted
    with bars.bar(4, "evaluate") as bar:
        bar.update(4)
    assert bar.n == 4 and sys.stderr.getvalue() == ""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    for _ in range(2):
        with bars.bar(4, "evaluate") as bar:
            bar.update(4)
    assert screen.getvalue().count("no progress bars") == 1 and "fog-edge-toolkit[workstation]" in screen.getvalue()


def test_evaluate_a_bundle_off_a_terminal_without_tqdm(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    code = textwrap.dedent(f'''
        import sys
        sys.modules["tqdm"] = None            # not installed
        from toolkit.cli import main
        sys.exit(main(["evaluate", "--synthetic", "1", "--bundle", {str(bundle)!r}, "--json"]))
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-1500:]
    assert json.loads(done.stdout)["recordings"] == 1
