"""Signed bundles (issue 28): keys, signatures, and what the daemon and `toolkit inspect --verify` trust.

The attack the issue measured: edit the manifest (thresholds, rate, units, graphs), recompute every hash and the
digest. Such a bundle is refused when a trusted key or a pin is configured, and runs only with a loud warning (log,
status line, counter, metric) when neither is."""
from __future__ import annotations

import base64
import json
import os
import shutil
import stat

import pytest

from deploy.bundle import Bundle, bundle_digest, write_manifest
from deploy.counters import Counters
from deploy.daemon import main as daemon_main
from deploy.errors import BundleError, FogError
from deploy.signing import check_trust, load_trusted_keys, read_signatures
from deploy.recording import write_recording
from tests.helpers_bundle import make_bundle
from tests.test_stream import walking_recording
from toolkit.cli import main as cli
from toolkit.export.signer import generate_key, load_private_key, sign_bundle


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("sign")
    keys = {name: generate_key(root / "keys" / name) for name in ("lab", "other")}
    bundle = make_bundle(root / "original")
    sign_bundle(bundle, load_private_key(keys["lab"]["private"]))
    write_recording(walking_recording(10.0), root / "walk.npz", "npz")
    return root, keys, bundle


def _daemon(made, bundle, *settings) -> int:
    """The daemon on a 10 s replay (events to a file), with `--set` settings."""
    argv = [str(bundle), "--replay", str(made[0] / "walk.npz"), "--sink", f"file:{made[0] / 'events.jsonl'}"]
    return daemon_main(argv + sum((["--set", s] for s in settings), []))


@pytest.fixture
def bundle(made, tmp_path):
    return shutil.copytree(made[2], tmp_path / "b")


@pytest.fixture
def keys(made):
    return made[1]


def _redigest(bundle, change) -> None:
    """The attack: edit the manifest, then recompute the hashes of the files and the digest."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    write_manifest(bundle, manifest)


EDITS = {
    "thresholds": lambda m: m["events"].update(on={c: 0.999 for c in m["output"]["classes"]}),
    "rate": lambda m: m["input"]["preprocess"].update(rate_hz=100),
    "units": lambda m: m["input"]["preprocess"].update(units="m/s^2"),
}


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path, capsys):
    assert cli(["keygen", str(tmp_path / "k")]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    assert "BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_text() and "trusted_keys = [" in out
    inline = out.split('trusted_keys = ["')[1].split('"')[0]
    assert load_trusted_keys([inline]) == load_trusted_keys([str(tmp_path / "k.pub")])   # base64 or the PEM file
    assert cli(["keygen", str(tmp_path / "k")]) == 2
    assert "refusing to overwrite a key" in capsys.readouterr().err


def test_signed_bundle_runs_with_its_key(bundle, keys, made, capsys):
    assert _daemon(made, bundle, f'trusted_keys=["{keys["lab"]["public"]}"]') == 0
    err = capsys.readouterr().err
    assert f"signed by trusted key {keys['lab']['key_id']}" in err and "NOT ANCHORED" not in err
    assert cli(["inspect", str(bundle), "--verify", "--trusted-key", keys["lab"]["public_base64"]]) == 0
    assert f"trust      signed by trusted key {keys['lab']['key_id']}" in capsys.readouterr().out


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_redigested_bundle_is_refused_with_a_key_or_a_pin_and_warned_about_without(bundle, keys, made,
                                                                                              capsys, edit):
    pin = Bundle.load(made[2]).digest
    _redigest(bundle, EDITS[edit])
    assert Bundle.load(bundle).digest != pin                          # the digest itself is consistent again
    for flags, needle in (([f'trusted_keys=["{keys["lab"]["public"]}"]'], "no valid signature by a trusted key"),
                          ([f'bundle_digest="{pin}"'], "is not the pinned")):
        assert daemon_main([str(bundle), "--stdin", *sum((["--set", f] for f in flags), [])]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
    (bundle / "signature.json").unlink()                               # the attacker also drops the signature
    assert daemon_main([str(bundle), "--stdin", "--set", f'trusted_keys=["{keys["lab"]["public"]}"]']) == 2
    assert "not signed, and trusted_keys are configured" in capsys.readouterr().err
    assert _daemon(made, bundle) == 0                                  # nothing configured: runs, loudly
    err = capsys.readouterr().err
    assert "BUNDLE NOT ANCHORED" in err and '"bundle_anchor": "none"' in err
    assert cli(["inspect", str(bundle), "--verify"]) == 0
    assert "WARNING: nothing but the bundle's own digest vouches for it" in capsys.readouterr().err


def test_a_signature_that_no_longer_matches_is_refused_even_without_keys(bundle, capsys):
    _redigest(bundle, EDITS["units"])                                   # the signature file is left as it was
    assert daemon_main([str(bundle), "--stdin"]) == 2
    err = capsys.readouterr().err
    assert "its signature does not match it" in err and "changed after signing" in err


def test_swapped_graphs_with_fresh_hashes_are_refused(made, keys, tmp_path, capsys):
    bundle = make_bundle(tmp_path / "two", precision="fp32")
    shutil.copy(bundle / "model_fp32.onnx", bundle / "model_other.onnx")
    _redigest(bundle, lambda m: m)
    sign_bundle(bundle, load_private_key(keys["lab"]["private"]))
    _redigest(bundle, lambda m: m["models"].update(fp32="model_other.onnx"))
    assert cli(["inspect", str(bundle), "--verify", "--trusted-key", keys["lab"]["public"]]) == 2
    assert "no valid signature by a trusted key" in capsys.readouterr().err


def test_a_key_that_is_not_trusted_or_a_forged_signature_is_refused(bundle, keys):
    trusted = load_trusted_keys([keys["other"]["public"]])
    with pytest.raises(BundleError, match="which is not among trusted_keys"):
        check_trust(bundle, Bundle.load(bundle).digest, trusted)
    path = bundle / "signature.json"
    data = json.loads(path.read_text())
    data["signatures"][0]["signature"] = base64.b64encode(bytes(64)).decode()
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="does not verify"):
        check_trust(bundle, Bundle.load(bundle).digest, load_trusted_keys([keys["lab"]["public"]]))


def test_unsigned_bundle_with_keys_runs_only_when_require_signature_is_false(made, keys, tmp_path, capsys):
    bundle = shutil.copytree(made[2], tmp_path / "u")
    (bundle / "signature.json").unlink()
    key = f'trusted_keys=["{keys["lab"]["public"]}"]'
    assert _daemon(made, bundle, key, "require_signature=false") == 0
    assert "unsigned bundle accepted because require_signature = false" in capsys.readouterr().err
    assert daemon_main([str(bundle), "--stdin", "--set", "require_signature=true"]) == 2
    assert "require_signature = true needs trusted_keys" in capsys.readouterr().err


def test_signing_verifies_first_and_adds_a_second_signer(made, keys, tmp_path):
    bundle = shutil.copytree(made[2], tmp_path / "s")
    sign_bundle(bundle, load_private_key(keys["other"]["private"]))
    assert {e["key_id"] for e in read_signatures(bundle)} == {keys["lab"]["key_id"], keys["other"]["key_id"]}
    assert check_trust(bundle, Bundle.load(bundle).digest,
                       load_trusted_keys([keys["other"]["public"]])).key_id == keys["other"]["key_id"]
    (bundle / "model_fp32.onnx").write_bytes(b"changed")
    with pytest.raises(BundleError, match="sha256 differs|size"):
        sign_bundle(bundle, load_private_key(keys["lab"]["private"]))


def test_passphrase_protected_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FOG_TEST_PASS", "correct horse")
    assert cli(["keygen", str(tmp_path / "k"), "--passphrase-env", "FOG_TEST_PASS"]) == 0
    assert b"ENCRYPTED" in (tmp_path / "k").read_bytes()
    bundle = make_bundle(tmp_path / "b")
    assert cli(["sign", str(bundle), "--key", str(tmp_path / "k")]) == 2
    assert "--passphrase-env VAR when the key is encrypted" in capsys.readouterr().err
    monkeypatch.setenv("FOG_TEST_PASS", "wrong")
    assert cli(["sign", str(bundle), "--key", str(tmp_path / "k"), "--passphrase-env", "FOG_TEST_PASS"]) == 2
    assert "wrong passphrase" in capsys.readouterr().err
    monkeypatch.setenv("FOG_TEST_PASS", "correct horse")
    assert cli(["sign", str(bundle), "--key", str(tmp_path / "k"), "--passphrase-env", "FOG_TEST_PASS"]) == 0
    assert cli(["inspect", str(bundle), "--verify", "--trusted-key", str(tmp_path / "k.pub")]) == 0


def test_export_signs_and_reads_the_key_before_the_work(tmp_path, keys, capsys):
    flags = ["export", "--model", "tests.fixtures.user_models:tiny_convnet", "--patch", "4", "--layout", "BCT",
             "--n-patches", "8", "--rate-hz", "64", "--target", "cpu", "--no-fidelity", "--quiet"]
    assert cli([*flags, "--out", str(tmp_path / "x"), "--sign-key", str(tmp_path / "missing")]) == 2
    assert "--key" in capsys.readouterr().err and not (tmp_path / "x").exists()   # refused before any work
    assert cli([*flags, "--out", str(tmp_path / "e"), "--sign-key", keys["lab"]["private"]]) == 0
    assert f"signed with key {keys['lab']['key_id']}" in capsys.readouterr().out
    assert cli(["inspect", str(tmp_path / "e"), "--verify", "--trusted-key", keys["lab"]["public"]]) == 0


def test_config_trusted_keys_are_checked_at_start(bundle, capsys, tmp_path):
    for value, needle in (('"not a list"', "expected a list of public keys"),
                          (f'["{tmp_path}/nope.pub"]', "neither a base64 Ed25519 key nor a readable file")):
        assert daemon_main([str(bundle), "--stdin", "--set", f"trusted_keys={value}"]) == 2
        assert needle in capsys.readouterr().err


def test_prometheus_says_what_anchors_the_bundle():
    counters = Counters()
    counters.bundle_anchor = "none"
    assert 'fog_bundle_anchored{by="none"} 0' in counters.prometheus()
    assert "BUNDLE NOT ANCHORED" in counters.status_line()
    counters.bundle_anchor = "signature"
    assert 'fog_bundle_anchored{by="signature"} 1' in counters.prometheus()


def test_inspect_escapes_control_characters_and_loads_every_graph(made, tmp_path, capsys):
    bundle = shutil.copytree(made[2], tmp_path / "c")
    (bundle / "signature.json").unlink()
    _redigest(bundle, lambda m: m["model"].update(name="evil\x1b[2J\x1b]0;pwned\x07", notes=["\u202eesrever"]))
    assert cli(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "evil\\x1b[2J" in out and "\\u202e" in out
    onnx_path = bundle / "model_fp32.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:-200])               # truncated, hashes recomputed
    _redigest(bundle, lambda m: m)
    assert cli(["inspect", str(bundle), "--verify"]) == 2
    err = capsys.readouterr().err
    assert "model_fp32.onnx: not a readable ONNX model" in err or "cannot load" in err, err


def test_external_data_outside_the_bundle_is_refused(tmp_path, capsys):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    bundle = make_bundle(tmp_path / "x")
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["probs"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(bundle / "model_fp32.onnx"), save_as_external_data=True, location="w.bin",
                    size_threshold=0)
    shutil.move(bundle / "w.bin", tmp_path / "w.bin")                  # the weights now live outside
    loaded = onnx.load(str(bundle / "model_fp32.onnx"), load_external_data=False)
    loaded.graph.initializer[0].external_data[0].value = "../w.bin"
    onnx.save(loaded, str(bundle / "model_fp32.onnx"))
    _redigest(bundle, lambda m: m)
    assert cli(["inspect", str(bundle), "--verify"]) == 2
    assert "external data '../w.bin'" in capsys.readouterr().err


def test_manifest_values_are_range_checked_before_use(made, tmp_path, capsys):
    for change, needle in ((lambda m: m["input"]["preprocess"].update(n_patches=1e8), "n_patches = 100000000.0"),
                           (lambda m: m["input"]["preprocess"].update(n_patches=10 ** 8), "<= 1,048,576"),
                           (lambda m: m["input"]["preprocess"].update(n_patches=200_000), "1,600,000 samples is over"),
                           (lambda m: m["input"]["preprocess"].update(rate_hz="64"),
                            "rate_hz = '64': expected a number"),
                           (lambda m: m["output"].update(classes=[]), "output.classes")):
        bundle = shutil.copytree(made[2], tmp_path / f"r{len(list(tmp_path.iterdir()))}")
        (bundle / "signature.json").unlink()
        _redigest(bundle, change)
        assert daemon_main([str(bundle), "--stdin"]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
        assert cli(["inspect", str(bundle)]) == 2
        assert needle in capsys.readouterr().err


def test_missing_pynacl_is_a_clear_error(bundle, keys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "nacl.signing", None)                # as if PyNaCl were not installed
    with pytest.raises(FogError, match=r"fog-edge-toolkit\[device\]"):
        check_trust(bundle, Bundle.load(bundle).digest, load_trusted_keys([keys["lab"]["public"]]))
