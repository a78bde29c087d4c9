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
