"""`toolkit export` end to end on small user-style models: bundle contents, checks, verification, determinism,
loud failures, per-target precision, and the tampered-bundle refusal of `toolkit inspect --verify`."""
from __future__ import annotations

import json

import onnx
import pytest

from deploy.bundle import Bundle
from deploy.errors import FogError
from toolkit.cli import main as cli
from toolkit.export import ExportOptions, export_bundle
from toolkit.export.source import resolve
from toolkit.export.targets import get_target

CONV = "tests.fixtures.user_models:tiny_convnet"
CONV_FLAGS = ["--model", CONV, "--patch", "4", "--layout", "BCT", "--n-patches", "8", "--rate-hz", "64",
              "--calib-windows", "16", "--verify-windows", "8", "--quiet", "--allow-degenerate"]


def _conv_source():
    return resolve(CONV, preprocess={"patch": 4, "layout": "BCT", "rate_hz": 64.0}, n_patches=8)


def _options(**kw):
    # the stand-ins seed their own random weights: always-on detectors, exported on purpose (toolkit.export.detector)
    return ExportOptions(calib_windows=16, verify_windows=8, quiet=True, allow_degenerate=True, **kw)


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "jetson"
    assert cli(["export", "--target", "jetson", "--out", str(out), "--on", "0.6", *CONV_FLAGS]) == 0
    return out


def test_bundle_holds_checked_verified_models(jetson_bundle, capsys):
    manifest = Bundle.load(jetson_bundle).manifest
    assert manifest["precision"] == "int8" and manifest["target"]["name"] == "jetson-orin-jp6"
    assert manifest["models"]["fp32"] == "model_fp32.onnx" and manifest["models"]["int8"] == "model_int8_qdq.onnx"
    assert manifest["input"]["shape"] == [1, 12, 8] and manifest["output"]["shape"] == [1, 8, 3]
    assert manifest["output"]["per"] == "patch" and manifest["output"]["activation"] == "sigmoid"
    names = {(c["model"], c["name"]) for c in manifest["checks"]}
    assert ("model_int8_qdq.onnx", "Q/DQ rules") in names and ("model_fp32.onnx", "operators") in names
    assert all(c["passed"] or c.get("warning") for c in manifest["checks"])   # warnings: the stand-in's detector
    pairs = manifest["verification"]["pairs"]
    assert set(pairs) == {"torch_vs_ort_fp32", "torch_qat_vs_ort_int8", "torch_vs_ort_int8"}
    for pair in pairs.values():
        assert pair["passed"] and pair["threshold"]
        assert all(pair[k] >= v if k == "agreement" else pair[k] <= v for k, v in pair["threshold"].items())
    assert manifest["events"]["on"] == {"StartHesitation": 0.6, "Turn": 0.6, "Walking": 0.6}
    assert manifest["events"]["off"]["Turn"] == 0.35 and manifest["events"]["hop_s"] == 0.5
    assert {"kit/build_engine.sh", "kit/reference.npz", "model_fp32.onnx", "model_int8_qdq.onnx"} <= \
        set(manifest["files"])
    for rel in ("model_fp32.onnx", "model_int8_qdq.onnx"):
        model = onnx.load(str(jetson_bundle / rel))
        assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["probs"]
    assert cli(["inspect", str(jetson_bundle), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "torch_vs_ort_int8" in out and "verified: all" in out and "jetson-orin-jp6" in out


def test_tampered_bundle_is_refused(jetson_bundle, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(jetson_bundle, copy)
    path = copy / "model_int8_qdq.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert cli(["inspect", str(copy), "--verify"]) == 2
    err = capsys.readouterr().err
    assert "model_int8_qdq.onnx" in err and "sha256" in err
    assert cli(["inspect", str(copy)]) == 0  # without --verify it still prints for a person


def test_exports_are_deterministic(jetson_bundle, tmp_path):
    again = tmp_path / "again"
    assert cli(["export", "--target", "jetson", "--out", str(again), "--on", "0.6", *CONV_FLAGS]) == 0
    first, second = (json.loads((p / "manifest.json").read_text())["files"] for p in (jetson_bundle, again))
    for rel in ("model_fp32.onnx", "model_int8_qdq.onnx", "kit/build_engine.sh"):
        assert first[rel] == second[rel], rel


def test_verification_beyond_threshold_fails_loudly_and_writes_nothing(tmp_path, monkeypatch):
    from toolkit.export import verify
    monkeypatch.setitem(verify.THRESHOLDS, "torch_vs_ort_int8", {"mean_abs": 1e-9, "agreement": 1.0})
    out = tmp_path / "b"
    with pytest.raises(verify.VerificationError, match="torch_vs_ort_int8"):
        export_bundle(_conv_source(), get_target("jetson"), out, _options())
    assert not out.exists() and not (tmp_path / "b.partial").exists()


def test_nano_takes_fp16_only(tmp_path, capsys):
    with pytest.raises(FogError, match="jetson-nano.*int8|int8.*jetson-nano"):
        export_bundle(_conv_source(), get_target("jetson-nano"), tmp_path / "n8", _options(precision="int8"))
    manifest = export_bundle(_conv_source(), get_target("jetson-nano"), tmp_path / "n", _options())
    assert manifest["precision"] == "fp16" and manifest["models"]["int8"] is None
    assert manifest["export"]["opset"] == 13
    script = (tmp_path / "n" / "kit" / "build_engine.sh").read_text()
    assert "--workspace=1024" in script and "--fp16" in script and "--int8" not in script


def test_cpu_defaults_to_fp32_without_int8_work_and_says_why(tmp_path):
    manifest = export_bundle(_conv_source(), get_target("cpu"), tmp_path / "c", _options())
    choice = manifest["export"]["cpu_precision"]
    assert manifest["precision"] == "fp32" and choice["precision"] == "fp32" and choice["asked"] == "fp32"
    assert "unrolled" in choice["reason"] and "--precision fastest" in choice["reason"]
    assert choice["latency_ms"] is None and manifest["export"]["calibration"] is None  # nothing measured or calibrated
    assert manifest["models"]["int8"] is None and not (tmp_path / "c" / "model_int8_qdq.onnx").exists()
    assert not (tmp_path / "c" / "kit").exists()


def test_cpu_fastest_measures_every_plan_and_records_the_decision(tmp_path):
    from toolkit.export.cpu_plans import choose
    from toolkit.export.pipeline import INT8_MIN_SPEEDUP
    manifest = export_bundle(_conv_source(), get_target("cpu"), tmp_path / "f", _options(precision="fastest"))
    choice = manifest["export"]["cpu_precision"]
    latency = choice["latency_ms"]
    assert set(latency) == {"fp32", "int8-qdq", "int8-dynamic"} and all(v > 0 for v in latency.values())
    assert choice["asked"] == "fastest" and "interleaved" in choice["method"]
    winner, reason = choose(latency, INT8_MIN_SPEEDUP)
    assert choice["reason"] == reason and manifest["precision"] == ("fp32" if winner == "fp32" else "int8")
    kept = {"fp32": None, "int8-qdq": "model_int8_qdq.onnx", "int8-dynamic": "model_int8_dynamic.onnx"}[winner]
    assert manifest["models"]["int8"] in (kept, "model_int8_qdq.onnx" if kept is None else kept)
    assert manifest["onnxruntime"]["preoptimized"] == ([] if winner == "fp32" else ["int8"])
    assert manifest["verification"]["pairs"]["torch_vs_ort_int8_dynamic"]["passed"]
    assert manifest["export"]["cpu_latency_ms"] == latency


@pytest.mark.parametrize("fp32,int8,expected,words", [
    (1.28, 8.36, "fp32", "6.53x slower"),     # fog-small measured: unrolled Q/DQ graph
    (2.0, 1.0, "int8", "2.00x faster"),
    (1.0, 0.95, "fp32", "only 1.05x faster"),  # a near tie keeps the more accurate model
    (1.1, 1.0, "int8", "1.10x faster"),        # exactly the margin is enough
])
def test_cpu_precision_decision_from_given_timings(fp32, int8, expected, words):
    from toolkit.export.cpu_plans import choose
    precision, reason = choose({"fp32": fp32, "int8-qdq": int8}, 1.10)
    precision = "int8" if precision.startswith("int8") else precision
    assert precision == expected and words in reason and f"fp32 {fp32:.2f} ms" in reason


def test_fastest_is_only_for_the_cpu_target(tmp_path):
    with pytest.raises(FogError, match="fastest.*cpu target"):
        export_bundle(_conv_source(), get_target("jetson"), tmp_path / "j", _options(precision="fastest"))
    assert not (tmp_path / "j").exists()


def test_existing_output_needs_force(jetson_bundle):
    with pytest.raises(FogError, match="--force"):
        export_bundle(_conv_source(), get_target("jetson"), jetson_bundle, _options())


def test_recurrent_layernorm_model_for_tensorrt_85(tmp_path):
    """A GRU + LayerNorm model on Xavier: opset 16 (LayerNorm decomposed), fused GRU in the float graph, unrolled
    Q/DQ INT8 graph."""
    source = resolve("tests.fixtures.user_models:tiny_bigru", n_patches=12,
                     classes=["StartHesitation", "Turn", "Walking", "NoEvent"])
    manifest = export_bundle(source, get_target("jetson-xavier"), tmp_path / "x", _options())
    fp32 = onnx.load(str(tmp_path / "x" / "model_fp32.onnx"))
    ops = {n.op_type for n in fp32.graph.node}
    assert "GRU" in ops and "LayerNormalization" not in ops and manifest["export"]["opset"] == 16
    int8_ops = {n.op_type for n in onnx.load(str(tmp_path / "x" / "model_int8_qdq.onnx")).graph.node}
    assert "GRU" not in int8_ops and "QuantizeLinear" in int8_ops
    assert manifest["output"]["per"] == "sample" and manifest["output"]["shape"] == [1, 12, 4]


def test_layernorm_model_forced_to_opset_17_on_xavier_names_node_op_target(tmp_path, capsys):
    out = tmp_path / "x17"
    rc = cli(["export", "--model", "tests.fixtures.user_models:tiny_bigru", "--n-patches", "8", "--target",
              "jetson-xavier", "--opset", "17", "--precision", "fp16", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "(op LayerNormalization): not supported by TensorRT 8.5.2 (target jetson-xavier)" in err
    assert "node '" in err


def test_bad_event_thresholds_are_refused_before_work(tmp_path, capsys):
    assert cli(["export", "--target", "cpu", "--out", str(tmp_path / "e"), "--on", "0.3", "--off", "0.5",
                *CONV_FLAGS]) == 2
    assert "off threshold must be <= its on threshold" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_int8_pair_is_judged_by_mean_tail_and_decisions_not_one_element():
    import numpy as np

    from toolkit.export.verify import compare

    float_probs = np.linspace(0.01, 0.99, 10_000)
    one_outlier = float_probs.copy()
    one_outlier[5000] += 0.3                                  # a single steep logit near the boundary
    assert compare("torch_vs_ort_int8", float_probs, one_outlier)["passed"]
    shifted = np.clip(float_probs + 0.12, 0, 1)               # every probability off: tail and decisions move
    result = compare("torch_vs_ort_int8", float_probs, shifted)
    assert not result["passed"] and result["p99_abs"] > 0.1 and result["agreement"] < 0.98
    # the exact pairs keep their pointwise limit
    assert not compare("torch_vs_ort_fp32", float_probs, one_outlier)["passed"]
