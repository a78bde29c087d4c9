"""Fault injection, bundles (issue 15): a tampered or traversing bundle is refused by the daemon and by
`toolkit inspect --verify`, with one clear line, exit 2 and no traceback; a pinned digest refuses any other bundle."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from deploy.bundle import Bundle, bundle_digest, write_manifest
from deploy.daemon import main as daemon_main
from tests.helpers_bundle import make_bundle
from toolkit.cli import main as cli


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("faults") / "bundle")


@pytest.fixture
def bundle(original, tmp_path):
    return shutil.copytree(original, tmp_path / "b")


def _edit(bundle, change):
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def _refused(bundle, capsys, *needles):
    """Both the daemon and inspect --verify refuse it: exit 2, the reason named, no traceback."""
    assert cli(["inspect", str(bundle), "--verify"]) == 2
    err = capsys.readouterr().err
    assert daemon_main([str(bundle), "--stdin"]) == 2
    err += capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    assert "Traceback" not in err and "verified" not in err


def test_digest_is_printed_and_stable(bundle, capsys):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["digest"] == bundle_digest(manifest) == Bundle.load(bundle).digest
    assert cli(["inspect", str(bundle), "--verify"]) == 0
    assert f"digest     {manifest['digest']}" in capsys.readouterr().out


@pytest.mark.parametrize("change", [
    lambda m: m["events"].update(on={c: 0.99 for c in m["output"]["classes"]}),   # a blinded detector
    lambda m: m["events"].update(hop_s=0.25),
    lambda m: m.pop("digest"),
])
def test_any_manifest_change_is_refused(bundle, capsys, change):
    _edit(bundle, change)
    _refused(bundle, capsys, "manifest.json")


@pytest.mark.parametrize("path", ["../../outside/blind.onnx", "/etc/passwd", "sub/../../x.onnx"])
def test_model_paths_leaving_the_bundle_are_refused_even_with_a_fresh_digest(bundle, capsys, path):
    (bundle.parent / "outside").mkdir(exist_ok=True)
    shutil.copy(bundle / "model_fp32.onnx", bundle.parent / "outside" / "blind.onnx")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["models"]["fp32"] = path
    manifest["digest"] = bundle_digest(manifest)           # an attacker recomputes the digest
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _refused(bundle, capsys, "leaves the bundle")


def test_files_entry_outside_with_its_right_hash_is_refused(bundle, capsys):
    from deploy.bundle import sha256_file
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["../../../etc/hostname"] = {"sha256": sha256_file("/etc/hostname"),
                                                  "bytes": os.path.getsize("/etc/hostname")}
    manifest["digest"] = bundle_digest(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _refused(bundle, capsys, "leaves the bundle")


def test_symlink_out_of_the_bundle_is_refused(bundle, capsys, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle / "model_fp32.onnx", outside)
    (bundle / "model_fp32.onnx").symlink_to(outside)
    _refused(bundle, capsys, "symlink leading out of the bundle")


def test_a_changed_model_byte_is_refused(bundle, capsys):
    with open(bundle / "model_fp32.onnx", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 1]))
    _refused(bundle, capsys, "sha256 differs")


def test_pinned_digest_refuses_a_rebuilt_bundle(bundle, capsys, tmp_path):
    pin = Bundle.load(bundle).digest
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["events"]["on"] = {c: 0.99 for c in manifest["output"]["classes"]}
    write_manifest(bundle, manifest)                        # consistent in itself, but not the owner's
    assert cli(["inspect", str(bundle), "--verify"]) == 0
    capsys.readouterr()
    assert daemon_main([str(bundle), "--stdin", "--set", f'bundle_digest="{pin}"']) == 2
    err = capsys.readouterr().err
    assert "is not the pinned" in err and "Traceback" not in err


def test_pinned_digest_accepts_its_bundle(bundle, tmp_path):
    pin = Bundle.load(bundle).digest
    config = tmp_path / "d.toml"
    config.write_text(f'bundle = "{bundle}"\nbundle_digest = "{pin}"\n[source]\nkind = "stdin"\n')
    lines = "".join(f"{i / 64:.6f},1.0,0.0,0.0\n" for i in range(200))
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    result = subprocess.run([sys.executable, "-m", "deploy", "--config", str(config)], input=lines, text=True,
                            capture_output=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    counters = json.loads(result.stderr.strip().splitlines()[-1])["counters"]
    assert counters["received"] == 200 and counters["balanced"]
