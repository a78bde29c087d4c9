"""The one onnxruntime session loader (deploy.engines.session): options as data, the same on every path."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

from deploy.engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from deploy.engines.session import (DEVICE_OPTIMIZERS_OFF, SessionSettings, device_settings,  # noqa: E402
                                    open_session, session_options)
from deploy.errors import BundleError  # noqa: E402
from tests.test_architecture import REPO  # noqa: E402


def _tiny_model() -> bytes:
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 4))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 4))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def test_settings_become_the_options_they_name():
    options = session_options(device_settings(2, preoptimized=True, config={"session.intra_op.allow_spinning": 0}))
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(device_settings(1)).graph_optimization_level == \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert device_settings(1).disabled_optimizers == DEVICE_OPTIMIZERS_OFF
    plain = session_options(SessionSettings(optimization="basic"))
    assert plain.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert plain.intra_op_num_threads == 0 and plain.log_severity_level == 3   # onnxruntime's default threads
    with pytest.raises(ValueError, match="optimization 'fast'"):
        SessionSettings(optimization="fast")


def test_a_model_onnxruntime_cannot_load_names_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BundleError, match=r"model\.onnx: onnxruntime cannot load this stage .*re-export the bundle"):
        open_session(bad, what="stage")
    x = np.arange(-2, 2, dtype=np.float32).reshape(1, 4)
    assert open_session(_tiny_model()).run(None, {"x": x})[0].tolist() == [[0, 0, 0, 1]]


def test_the_device_engine_opens_its_session_with_the_device_settings(tmp_path):
    path = tmp_path / "relu.onnx"
    path.write_bytes(_tiny_model())
    engine = OnnxRuntimeEngine(path, threads=1, preoptimized=True)
    opened = engine.session.get_session_options()
    wanted = session_options(device_settings(1, preoptimized=True))
    for name in ("intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level"):
        assert getattr(opened, name) == getattr(wanted, name), name


def test_no_session_is_built_anywhere_else():
    """One home: every onnxruntime session of the project, its benchmarks and tests comes from open_session."""
    home = REPO / "deploy" / "engines" / "session.py"
    pattern = re.compile(r"\b(InferenceSession|SessionOptions)\(")
    found = [f"{path.relative_to(REPO)}:{n}" for folder in ("models", "deploy", "calibration", "toolkit", "benchmarks",
                                                            "tests")
             for path in sorted((REPO / folder).rglob("*.py")) if path != home and path != Path(__file__)
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, f"onnxruntime sessions built outside deploy.engines.session.open_session: {found}"

