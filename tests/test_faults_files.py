"""Fault injection, files that could run code (issue 15): a crafted `last.pt` in a run folder is refused on --resume
without running anything; a TensorRT cache engine whose bytes changed is not deserialized."""
from __future__ import annotations

import os

import pytest

from deploy.errors import FogError

torch = pytest.importorskip("torch")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_LAST_PT",))


def test_crafted_last_pt_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    from calibration.train import fit
    from tests.test_calibration import SPEC, TinyNet
    from tests.test_train import CONFIG, recordings

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": _Payload()}, run / "last.pt")
    recs = recordings()
    train, val = recs[:4], recs[4:]
    with pytest.raises(FogError, match="not a plain resumable checkpoint"):
        fit(TinyNet(), train, val, SPEC, CONFIG, out_dir=run, resume=True, progress=False)
    assert not (tmp_path / "PWNED_BY_LAST_PT").exists()


def test_tensorrt_cache_engine_is_used_only_with_its_sha256(tmp_path):
    import hashlib

    from deploy.engines.tensorrt import cached_engine

    engine = tmp_path / "abc.engine"
    assert cached_engine(engine) is None
    engine.write_bytes(b"plan")
    assert cached_engine(engine) is None                                  # no record: never deserialized
    (tmp_path / "abc.engine.sha256").write_text(hashlib.sha256(b"plan").hexdigest() + "\n")
    assert cached_engine(engine) == engine
    engine.write_bytes(b"swapped plan")
    assert cached_engine(engine) is None                                  # changed after it was written


def test_tensorrt_build_writes_the_record_it_later_checks(tmp_path, monkeypatch):
    from deploy.bundle import Bundle
    import deploy.engines.tensorrt as trt_mod
    from tests.helpers_bundle import make_bundle

    folder = make_bundle(tmp_path / "bundle")
    handed = []

    class FakeCuda:
        def compute_capability(self, device=0):
            return "sm_87"
    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: type("TRT", (), {"__version__": "10.3.0"})())
    monkeypatch.setattr(trt_mod, "CudaRuntime", FakeCuda)
    monkeypatch.setattr(trt_mod.TensorRTEngine, "__init__",
                        lambda self, plan, precision, trt=None, cuda=None: handed.append(plan))
    builds = []
    monkeypatch.setattr(trt_mod, "build_serialized", lambda *a, **k: builds.append(1) or b"built plan")
    cache = tmp_path / "cache"
    cache.mkdir()
    trt_mod.TensorRTEngine.from_bundle(Bundle.load(folder), "fp32", cache_dir=cache)
    trt_mod.TensorRTEngine.from_bundle(Bundle.load(folder), "fp32", cache_dir=cache)
    assert len(builds) == 1 and handed == [b"built plan", b"built plan"]   # second start: the checked cache
    engine = next(cache.glob("*.engine"))
    engine.write_bytes(b"evil plan")
    trt_mod.TensorRTEngine.from_bundle(Bundle.load(folder), "fp32", cache_dir=cache)
    assert len(builds) == 2 and b"evil plan" not in handed


# ------------------------------------------------------------------ recordings: bounded memory, clear errors

def _csv(path, rows, extra=""):
    text = "Time,AccV,AccML,AccAP\n" + "".join(f"{i},-1.0,0.{i % 10},0.1\n" for i in range(rows)) + extra
    path.write_text(text)
    return path


def test_blocks_equal_a_whole_read_and_name_the_right_row(tmp_path):
    import numpy as np

    from deploy.blocks import open_replay
    from deploy.errors import DataError
    from deploy.recording import read_recording

    path = _csv(tmp_path / "r.csv", 1000)
    first, blocks = open_replay(path, block_rows=64)
    pieces = list(blocks)
    whole = read_recording(path)
    assert len(pieces) == 16 and first is pieces[0] and first.rate_hz == whole.rate_hz == 100.0
    np.testing.assert_array_equal(np.concatenate([p.acc for p in pieces]), whole.acc)
    np.testing.assert_array_equal(np.concatenate([p.time for p in pieces]), whole.time)
    bad = _csv(tmp_path / "bad.csv", 500, extra="500,-1.0,oops,0.1\n")
    with pytest.raises(DataError, match=r"row 502, column 'AccML': non-numeric cell 'oops'"):
        list(open_replay(bad, block_rows=64)[1])


def test_oversize_line_is_refused_early(tmp_path):
    from deploy.blocks import open_replay
    from deploy.errors import DataError

    path = _csv(tmp_path / "long.csv", 100, extra="1" * (20 << 20) + "\n")
    with pytest.raises(DataError, match="row 102: a line longer than 4096 bytes"):
        list(open_replay(path, block_rows=64)[1])


@pytest.mark.parametrize("fields, needle", [
    ({"rate_hz": "fast"}, "rate_hz"),
    ({"rate_hz": float("nan")}, "not a positive finite number"),
    ({"acc": [["a", "b", "c"]]}, "not numbers"),
    ({"units": "mg"}, "units"),
    ({"meta": "{not json"}, "meta is not valid JSON"),
    ({"time": ["x"]}, "not numbers"),
])
def test_npz_with_bad_fields_gives_a_clear_error(tmp_path, fields, needle):
    import numpy as np

    from deploy.errors import DataError
    from deploy.recording import read_recording

    arrays = {"acc": np.zeros((10, 3)), "rate_hz": np.float64(64), "units": np.str_("g")}
    arrays.update({k: np.asarray(v) for k, v in fields.items()})
    np.savez(tmp_path / "r.npz", **arrays)
    with pytest.raises(DataError, match=needle):
        read_recording(tmp_path / "r.npz")


def test_truncated_npz_gives_a_clear_error(tmp_path):
    import numpy as np

    from deploy.errors import DataError
    from deploy.recording import read_recording

    np.savez(tmp_path / "r.npz", acc=np.zeros((1000, 3)), rate_hz=np.float64(64), units=np.str_("g"))
    data = (tmp_path / "r.npz").read_bytes()
    (tmp_path / "r.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable npz recording"):
        read_recording(tmp_path / "r.npz")


def test_daemon_replay_of_bad_files_exits_2_without_traceback(tmp_path):
    import subprocess
    import sys

    from tests.helpers_bundle import make_bundle

    bundle = make_bundle(tmp_path / "b")
    long_line = _csv(tmp_path / "long.csv", 10, extra="9" * (1 << 20) + "\n")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 not really")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    for path, needle in ((long_line, "a line longer than"), (tmp_path / "cut.npz", "not a readable npz")):
        result = subprocess.run([sys.executable, "-m", "deploy", str(bundle), "--replay", str(path)],
                                capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode in (1, 2) and needle in result.stderr and "Traceback" not in result.stderr, \
            result.stderr[-1500:]
