"""The install outside this machine (issue 13): a wheel built from the repository carries every package and its data,
and in a fresh venv that has only the device's numpy + onnxruntime (no torch) its fog-daemon runs a bundle.

The wheel is built as deploy/JETSON.md says (`pip wheel . --no-deps`, the same setuptools backend that
`python -m build --wheel` runs), without build isolation so it needs no index."""
from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from deploy.recording import write_recording
from tests.helpers_bundle import make_bundle
from tests.test_stream import walking_recording

REPO = Path(__file__).resolve().parents[1]
DEVICE_PACKAGES = ("numpy", "onnxruntime")   # the base install: what the daemon needs to run a bundle
SIGNATURE_PACKAGES = ("nacl", "_cffi_backend")   # the device extra adds PyNaCl (and cffi's backend) for signatures
# without PYTHONPATH: a checkout on it (with its .egg-info) would look installed to pip and shadow the wheel
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NOTIFY_SOCKET")}


LEFT_BY_BUILDS = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                        ".benchmarks", "runs", "bundle", "out", ".venv*")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the source tree: a stale build/ of an earlier build cannot leak into it, and the
    checkout is left as it was."""
    source, out = tmp_path_factory.mktemp("src") / "repo", tmp_path_factory.mktemp("dist")
    shutil.copytree(REPO, source, ignore=LEFT_BY_BUILDS, symlinks=True)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                             "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=300,
                            env=CLEAN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("fog_edge_toolkit-*.whl")
    return built


def test_wheel_carries_the_packages_their_data_and_the_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "models", "deploy", "calibration", "toolkit"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout: cannot list the repository's files")
    missing = [path for path in tracked if path not in names and (REPO / path).exists()]
    assert missing == [], f"in the repository, not in the wheel: {missing}"
    for data in ("models/weights/fog-small-x3.pt", "models/weights/fog-small-x3.json",   # the bundled default
                 "models/weights/fog-small.pt", "models/weights/fog-small.json", "deploy/daemon.example.toml",
                 "deploy/systemd/fog-daemon.service", "toolkit/export/optables/trt10.1.json"):
        assert data in names
    assert not any(name.startswith(("tests/", "benchmarks/", "scripts/")) for name in names)
    info = zipfile.ZipFile(wheel)
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    meta = email.message_from_bytes(info.read(f"{dist_info}/METADATA"))
    base = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert not any(r.startswith("torch") for r in base), base    # the device never pulls torch
    assert {"device", "mqtt", "workstation"} <= set(meta.get_all("Provides-Extra"))
    entry_points = info.read(f"{dist_info}/entry_points.txt").decode()
    assert "fog-daemon = deploy.daemon:main" in entry_points and "toolkit = toolkit.cli:main" in entry_points


def _device_venv(folder: Path, wheel: Path, packages=DEVICE_PACKAGES) -> Path:
    """A fresh venv (no system site) with the wheel and only numpy + onnxruntime, linked from this interpreter's
    site-packages (no index here; on a device pip installs them from PyPI)."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                             "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=120,
                            env=CLEAN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    linked = folder / "device-deps"
    linked.mkdir()
    for name in packages:
        package = Path(__import__(name).__file__).parent
        package = package if (package / "__init__.py").exists() else package / name   # a lone module: its folder
        for path in package.parent.glob(f"{name}*"):   # the package, its .libs and its dist-info
            (linked / path.name).symlink_to(path)
    (site / "device-deps.pth").write_text(f"{linked}\n")
    return folder


def test_fog_daemon_from_the_wheel_runs_a_bundle_without_torch(wheel, tmp_path):
    env_dir = _device_venv(tmp_path / "venv", wheel)
    env = CLEAN_ENV
    python, daemon = env_dir / "bin" / "python", env_dir / "bin" / "fog-daemon"
    where = subprocess.run([str(python), "-c", "import deploy, importlib.util as u; print(deploy.__file__); "
                            "print(u.find_spec('torch'))"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(next((env_dir / "lib").glob("python3*/site-packages/deploy/__init__.py"))),
                                    "None"]
    helped = subprocess.run([str(daemon), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "mqtts://" in helped.stdout, helped.stderr
    bundle = make_bundle(tmp_path / "bundle")
    write_recording(walking_recording(20.0), tmp_path / "walk.npz", "npz")
    run = subprocess.run([str(daemon), str(bundle), "--replay", str(tmp_path / "walk.npz"), "--sink", "-?probs"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    decided = sum(len(m["p"]) for m in map(json.loads, run.stdout.splitlines()) if m["type"] == "probs")
    assert decided == 20 * 64                                          # every sample of the recording decided


def test_the_device_install_checks_signatures_without_torch_or_cryptography(wheel, tmp_path):
    """With the device extra's PyNaCl, the wheel's daemon runs a bundle signed by a trusted key and refuses one that
    was edited and re-digested after signing (the signature was made here, with `cryptography`)."""
    pytest.importorskip("nacl", reason="PyNaCl (the device extra) is not installed here")
    from deploy.bundle import write_manifest
    from toolkit.export.signer import generate_key, load_private_key, sign_bundle

    env_dir = _device_venv(tmp_path / "venv", wheel, DEVICE_PACKAGES + SIGNATURE_PACKAGES)
    check = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import importlib.util as u; "
                            "print(u.find_spec('cryptography'), u.find_spec('torch'))"], capture_output=True,
                           text=True, env=CLEAN_ENV, cwd=tmp_path)
    assert check.stdout.split() == ["None", "None"], check.stderr
    key = generate_key(tmp_path / "lab")
    bundle = make_bundle(tmp_path / "bundle")
    sign_bundle(bundle, load_private_key(key["private"]))
    write_recording(walking_recording(10.0), tmp_path / "walk.npz", "npz")
    argv = [str(env_dir / "bin" / "fog-daemon"), str(bundle), "--replay", str(tmp_path / "walk.npz"), "--sink",
            f"file:{tmp_path / 'out.jsonl'}", "--set", f'trusted_keys=["{key["public"]}"]']
    run = subprocess.run(argv, capture_output=True, text=True, env=CLEAN_ENV, cwd=tmp_path, timeout=60)
    assert run.returncode == 0 and f"signed by trusted key {key['key_id']}" in run.stderr, run.stderr[-2000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["events"]["on"] = {c: 0.999 for c in manifest["output"]["classes"]}
    write_manifest(bundle, manifest)                                    # hashes and digest recomputed
    run = subprocess.run(argv, capture_output=True, text=True, env=CLEAN_ENV, cwd=tmp_path, timeout=60)
    assert run.returncode == 2 and "no valid signature by a trusted key" in run.stderr, run.stderr[-2000:]
