"""The Python API (toolkit.api): the docs' notebook runs, module objects export with their layout found or a clear
error, offline prediction takes a batch-1 engine as it is, and evaluate says which graph it scored."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from deploy.bundle import Bundle  # noqa: E402
from deploy.engines import open_engine  # noqa: E402
from deploy.errors import FogError  # noqa: E402
from deploy.offline import batch_infer, predict_recording  # noqa: E402
from toolkit import api  # noqa: E402
from toolkit.api.model import ModelArgumentError, detect_layout  # noqa: E402
from toolkit.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEC = {"rate_hz": 64, "patch": 8, "n_patches": 32}


class PerPatch(nn.Module):
    """(batch, n_patches, patch*3) -> (batch, n_patches, 3): a BTC model."""

    def __init__(self, patch: int = 8):
        super().__init__()
        self.lin = nn.Linear(patch * 3, 3)

    def forward(self, x):
        return self.lin(x)


class ChannelsFirst(PerPatch):
    """The same model taking BCT (batch, patch*3, n_patches)."""

    def forward(self, x):
        return self.lin(x.transpose(1, 2))


def doc_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_docs_notebook_runs(tmp_path, monkeypatch, capsys):
    blocks = doc_blocks(REPO / "docs" / "api.md")
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "int8" in out and "budget" in out
    assert namespace["result"].out.is_dir() and namespace["probs"].shape[1] == 3


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("api") / "tiny"
    return api.export(PerPatch(), target="cpu", out=out, precision="int8", preprocess=SPEC, calib_windows=16,
                      verify_windows=4, fidelity=False)


def test_export_of_module_objects_finds_the_layout_or_says_what_to_pass(tiny_bundle, tmp_path):
    assert tiny_bundle.manifest["input"]["preprocess"]["layout"] == "BTC"
    assert tiny_bundle.manifest["input"]["shape"] == [1, 32, 24]
    assert detect_layout(ChannelsFirst().eval(), {**SPEC, "units": "g", "normalization": "window"}) == "BCT"
    with pytest.raises(ModelArgumentError, match="did you mean 'n_patches'"):
        api.export(PerPatch(), target="cpu", out=tmp_path / "x", preprocess={"rate_hz": 64, "n_patch": 32})
    square = {"rate_hz": 64, "patch": 8, "n_patches": 24}      # (1, 24, 24) either way: ambiguous
    with pytest.raises(ModelArgumentError, match="both input layouts.*'layout'"):
        api.export(PerPatch(), target="cpu", out=tmp_path / "y", preprocess=square)
    with pytest.raises(ModelArgumentError, match="neither input layout"):
        api.export(PerPatch(patch=5), target="cpu", out=tmp_path / "z", preprocess=SPEC)
    assert not any(tmp_path.iterdir())  # refused before any work
    with pytest.raises(TypeError, match="unknown option"):
        api.export(PerPatch(), target="cpu", out=tmp_path / "w", preprocess=SPEC, calib_windowz=3)


def test_offline_prediction_takes_a_batch_1_engine_as_it_is(tiny_bundle):
    from calibration.data import synthetic_recordings

    rec = synthetic_recordings(1, seed=3, minutes=0.5)[0]
    bundle = Bundle.load(tiny_bundle.out)
    engine = open_engine(bundle, backend="onnxruntime")
    assert engine.input_shape[0] == 1
    spec = bundle.manifest["input"]["preprocess"]
    by_method = predict_recording(rec, spec, engine.infer, 32)           # crashed before: 16 windows into batch 1
    by_engine = predict_recording(rec, spec, engine, 32)
    wrapped = predict_recording(rec, spec, batch_infer(engine), 32)
    assert by_method.shape[1] == 3 and len(by_method) > 1000
    np.testing.assert_array_equal(by_method, wrapped)
    np.testing.assert_array_equal(by_engine, wrapped)


def test_evaluate_scores_the_graph_asked_for_and_says_so(tiny_bundle, capsys):
    args = ["evaluate", "--synthetic", "1", "--minutes", "1", "--bundle", str(tiny_bundle.out)]
    figures = {}
    for precision in ("fp32", "int8"):
        assert main(args + ["--precision", precision, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["precision"] == precision and out["runtime"] == "onnxruntime"
        assert f"({precision}, onnxruntime)" in out["results"][0]["name"]
        figures[precision] = out["results"][0]["any_fog"]["percent_time_called_fog"]
    assert main(args + ["--precision", "int8"]) == 0
    assert "model graph scored: int8 on onnxruntime" in capsys.readouterr().out
    assert main(args + ["--json"]) == 0   # default: what the cpu target runs, here int8 (asked at export)
    assert json.loads(capsys.readouterr().out)["precision"] == "int8"
    assert main(["evaluate", "--synthetic", "1", "--model", "fog-small", "--precision", "int8"]) == 2
    assert "give --bundle" in capsys.readouterr().err


def test_evaluate_and_bench_take_module_objects(tmp_path):
    from calibration.data import synthetic_recordings

    recs = synthetic_recordings(1, seed=5, minutes=1)
    torch.manual_seed(0)
    model = PerPatch()
    direct = api.evaluate(model, recs, preprocess=SPEC)
    assert direct.precision == "fp32" and direct.runtime == "pytorch" and direct.model["name"] == "PerPatch"
    with pytest.raises(FogError, match="did you mean 'min_duration_s'"):
        api.evaluate(model, recs, preprocess=SPEC, events={"min_duration": 2})
    with pytest.raises(FogError, match="a bundle's graphs"):
        api.evaluate(model, recs, preprocess=SPEC, precision="int8")
    timing = api.bench(model, preprocess=SPEC, backends=["onnxruntime-fp32"])
    assert timing.median_ms("onnxruntime-fp32") > 0 and timing.realtime_budget_ms == 500.0
    assert "onnxruntime-fp32" in timing.table()


def test_api_export_matches_the_command_line(tiny_bundle, tmp_path, capsys):
    """The command is a thin layer: the same model and options give the same graphs (file hashes)."""
    from toolkit.export.source import from_factory

    assert main(["export", "--model", "tests.fixtures.user_models:tiny_convnet", "--patch", "4", "--layout", "BCT",
                 "--n-patches", "8", "--rate-hz", "64", "--target", "cpu", "--out", str(tmp_path / "cli"),
                 "--verify-windows", "2", "--no-fidelity", "--quiet"]) == 0
    capsys.readouterr()
    source = from_factory("tests.fixtures.user_models:tiny_convnet",
                          preprocess={"patch": 4, "layout": "BCT", "n_patches": 8, "rate_hz": 64})
    made = api.export(source, target="cpu", out=tmp_path / "api", verify_windows=2, fidelity=False)
    cli = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert made.manifest["input"] == cli["input"]
    assert made.manifest["files"]["model_fp32.onnx"]["sha256"] == cli["files"]["model_fp32.onnx"]["sha256"]
    assert os.path.isdir(made.out)
