"""Windows of many streams run together (deploy.batching): padding a partial batch, or whatever the other rows hold,
changes no one's output; the plan of calls is the cheapest; the export's batch graphs are verified row by row and a
bundle whose rows are not exact is run at its own size only."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.batching import EngineSet, WindowBatcher
from deploy.bundle import Bundle
from deploy.contract.batching import BatchingSection
from deploy.engines import open_engine
from deploy.errors import BundleError
from tests.helpers_bundle import make_bundle

pytest.importorskip("onnxruntime")

SIZES = (1, 4, 8)


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    """The stand-in exported at batch 1, 4 and 8 (its per-patch statistics as a 1x1 convolution: exact rows)."""
    return make_bundle(tmp_path_factory.mktemp("batched") / "b", batch=SIZES, exact_rows=True, gru=16)


@pytest.fixture(scope="module")
def inexact(tmp_path_factory):
    """The stand-in whose ReduceMean over a middle axis sums in another order at batch 1 than at batch 4."""
    return make_bundle(tmp_path_factory.mktemp("inexact") / "b", batch=(1, 4))


class Owner:
    """A stream as the batcher sees it: collects the rows it gets back."""

    def __init__(self):
        self.rows = []

    def window_done(self, y, engine_s):
        self.rows.append(y.copy())


def _windows(bundle, n, seed=0):
    spec = bundle.input.spec
    return np.random.default_rng(seed).normal(size=(n, spec.window, 3)).astype(np.float32)


def _engines(bundle, sizes):
    return EngineSet({s: open_engine(bundle, backend="onnxruntime", threads=1, batch=s) for s in sizes})


def test_the_manifest_records_every_size_and_its_row_by_row_verification(batched):
    bundle = Bundle.load(batched)
    section = bundle.batching
    assert section.sizes == SIZES and section.row_exact and section.usable_sizes == list(SIZES)
    assert section.files == {"fp32": {"4": "model_fp32_b4.onnx", "8": "model_fp32_b8.onnx"}}
    for size in ("4", "8"):
        rows = section.verification[size]["fp32"]["rows"]
        assert rows["passed"] and rows["rows_equal"] == f"{size}/{size}" and rows["padded_equal"]
        assert section.verification[size]["fp32"]["torch_vs_ort"]["passed"]
    checked = {c["model"] for c in json.loads((batched / "manifest.json").read_text())["checks"]}
    assert {"model_fp32_b4.onnx", "model_fp32_b8.onnx"} <= checked
    assert bundle.path_at("fp32", 8).name == "model_fp32_b8.onnx" and bundle.path_at("fp32", 1) == bundle.path("fp32")


def test_padding_and_the_other_rows_change_no_one_s_output(batched):
    bundle = Bundle.load(batched)
    spec = bundle.input.spec
    windows = _windows(bundle, 3)
    alone = [Owner() for _ in windows]
    single = WindowBatcher(_engines(bundle, (1,)), spec, immediate=True)
    for owner, window in zip(alone, windows):
        single.submit(owner, window)
    padded = WindowBatcher(_engines(bundle, (8,)), spec)     # 3 windows in a batch of 8: 5 rows of padding
    stale = padded.engines[8].input_buffer
    stale[:] = np.random.default_rng(1).normal(size=stale.shape) * 1e3   # whatever a previous call left there
    together = [Owner() for _ in windows]
    for owner, window in zip(together, windows):
        padded.submit(owner, window)
    padded.run()
    assert padded.padded_rows == 5 and padded.calls == {8: 1}
    for a, b in zip(alone, together):
        assert np.array_equal(a.rows[0], b.rows[0])          # bit for bit
    # the same windows beside others (a full batch of 8 different windows) give the same rows again
    crowd = [Owner() for _ in range(8)]
    full = WindowBatcher(_engines(bundle, (8,)), spec)
    for owner, window in zip(crowd, np.concatenate([windows, _windows(bundle, 5, seed=9)])):
        full.submit(owner, window)
    full.run()
    for a, b in zip(alone, crowd[:3]):
        assert np.array_equal(a.rows[0], b.rows[0])


def test_rows_come_back_to_their_owners_in_order_across_calls(batched):
    bundle = Bundle.load(batched)
    batcher = WindowBatcher(_engines(bundle, SIZES), bundle.input.spec)
    owners = [Owner() for _ in range(3)]
    windows = _windows(bundle, 30)
    for i, window in enumerate(windows):   # 30 windows: the batch runs when full (8), and at the end
        batcher.submit(owners[i % 3], window)
    batcher.run()
    reference = WindowBatcher(_engines(bundle, (1,)), bundle.input.spec, immediate=True)
    expected = Owner()
    for window in windows:
        reference.submit(expected, window)
    for k, owner in enumerate(owners):
        assert len(owner.rows) == 10
        assert all(np.array_equal(a, b) for a, b in zip(owner.rows, expected.rows[k::3]))
    assert batcher.windows_run == 30 and sum(batcher.calls.values()) >= 4


def test_the_plan_is_the_cheapest_sequence_of_calls():
    class Sized:
        def __init__(self, size):
            self.input_shape, self.output_shape = (size, 2), (size, 3)
            self.input_buffer = np.zeros(self.input_shape, np.float32)
    engines = EngineSet({s: Sized(s) for s in (1, 8, 32)}, costs={1: 1.0, 8: 5.0, 32: 16.0})
    assert engines.plan(3) == [1, 1, 1]            # 3 calls at batch 1 (3.0) beat one of 8 (5.0)
    assert engines.plan(6) == [8]                  # 5.0 < 6.0
    assert engines.plan(13) == [8, 1, 1, 1, 1, 1]  # 10.0 against 16.0 for a 32 and 10.0 for two 8s: the first found
    assert sum(engines.plan(30)) >= 30 and engines.plan(30) == [32]
    default = EngineSet({s: Sized(s) for s in (1, 8)})       # unmeasured: cost = size, exact fits, never padding
    assert default.plan(7) == [1] * 7 and default.plan(8) in ([8], [1] * 8)
    with pytest.raises(Exception, match="batches of 8"):
        EngineSet({4: Sized(8)})


def test_a_bundle_whose_rows_differ_runs_at_its_own_size_only(inexact):
    bundle = Bundle.load(inexact)
    section = bundle.batching
    assert not section.row_exact and section.usable_sizes == [1]
    rows = section.verification["4"]["fp32"]["rows"]
    assert not rows["passed"] and rows["max_abs"] < 1e-6     # the last bits only, but not the same numbers
    from deploy.gateway import open_engines
    config = {"gateway": {"batch_sizes": None}, "backend": "onnxruntime", "precision": None, "thread_cap": True}
    assert open_engines(bundle, config).sizes == [1]
    with pytest.raises(Exception, match="row_exact"):
        open_engines(bundle, {**config, "gateway": {"batch_sizes": [1, 4]}})


def test_the_batching_section_is_checked():
    with pytest.raises(BundleError, match="ascending"):
        BatchingSection(sizes=(8, 1))
    with pytest.raises(BundleError, match="must name a file"):
        BatchingSection(sizes=(1, 8), files={"fp32": {}})
    section = BatchingSection(sizes=(1, 8), files={"fp32": {"8": "b8.onnx"}})
    assert section.file("fp32", 1) is None and section.file("fp32", 8) == "b8.onnx"
    with pytest.raises(BundleError, match="no graphs at batch 4"):
        section.file("fp32", 4)
    assert BatchingSection.from_dict(section.to_dict()) == section


def test_a_tensorrt_export_gets_static_int8_graphs_per_size_and_a_profiled_float_graph(tmp_path):
    pytest.importorskip("torch")
    from toolkit.cli import main as cli
    out = tmp_path / "jetson"
    assert cli(["export", "--model", "tests.fixtures.user_models:tiny_convnet", "--rate-hz", "64", "--patch", "4",
                "--input-layout", "BCT", "--n-patches", "32", "--target", "jetson", "--calib-windows", "4",
                "--verify-windows", "4", "--batch", "1,4", "--no-fidelity", "--out", str(out), "--quiet"]) == 0
    section = Bundle.load(out).batching
    assert section.sizes == (1, 4) and section.files == {"fp32": {"4": "model_fp32_b4.onnx"},
                                                          "int8": {"4": "model_int8_qdq_b4.onnx"}}
    assert section.verification["4"]["int8"]["torch_vs_ort"]["passed"]
    assert section.tensorrt == {"file": "model_fp32_dynamic.onnx", "input": "x", "min": [1, 12, 32],
                                "opt": [4, 12, 32], "max": [4, 12, 32]}
    import onnx
    dims = onnx.load(str(out / "model_fp32_dynamic.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [12, 32]
    script = (out / "kit" / "build_engine.sh").read_text()
    assert 'BATCHES' in script and "--onnx=model_int8_qdq_b4.onnx" in script   # int8 runs its static graphs
    checked = {c["model"] for c in json.loads((out / "manifest.json").read_text())["checks"]}
    assert {"model_int8_qdq_b4.onnx", "model_fp32_dynamic.onnx (at batch 4)"} <= checked


def test_the_kit_times_a_dynamic_batch_engine_with_its_profile(tmp_path):
    from toolkit.export.buildkit import Reference, write_kit
    from toolkit.export.targets import get_target
    batching = {"sizes": [1, 8, 32], "files": {"fp32": {"8": "model_fp32_b8.onnx", "32": "model_fp32_b32.onnx"}},
                "tensorrt": {"file": "model_fp32_dynamic.onnx", "input": "x", "min": [1, 24, 128],
                             "opt": [32, 24, 128], "max": [32, 24, 128]}}
    ref = Reference(np.zeros((1, 24, 128), np.float32), np.zeros((1, 128, 3), np.float32), "test arrays", "fp16")
    kit = write_kit(tmp_path, get_target("jetson"), model_file="model_fp32.onnx", precision="fp16", ref=ref,
                    batching=batching)
    script = (tmp_path / "kit" / "build_engine.sh").read_text()
    assert ("--onnx=model_fp32_dynamic.onnx --saveEngine=cache/model_dynamic.engine --minShapes=x:1x24x128 "
            "--optShapes=x:32x24x128 --maxShapes=x:32x24x128") in script
    assert all("Shapes" not in command for command in kit["trtexec"])    # the bundle's own engine stays static
