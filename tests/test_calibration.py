"""Calibration windows, PTQ calibration on a tiny QAT model, the cache round trip onto a fresh variant."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from calibration.data import WindowReader, prepare_recording, sample_windows  # noqa: E402
from deploy.preprocess import PreprocessSpec  # noqa: E402
from deploy.recording import Recording  # noqa: E402

SPEC = PreprocessSpec(rate_hz=32, units="g", patch=4, n_patches=16, normalization="window", layout="BCT")


def toy_recording(seed, n=2000, rate=64.0, subject="s0", sh=False):
    """Walking-like 1.8 Hz sway with a 5 Hz tremble where a class is labelled (Turn; StartHesitation if sh)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    acc = np.stack([1 + 0.15 * np.sin(2 * np.pi * 1.8 * t), 0.05 * np.sin(2 * np.pi * 0.9 * t),
                    0.1 * np.cos(2 * np.pi * 1.8 * t)], axis=1) + rng.normal(0, 0.02, (n, 3))
    labels = np.zeros((n, 3))
    a = int(rng.integers(200, n - 400))
    labels[a:a + 150, 1] = 1
    acc[a:a + 150] += 0.2 * np.sin(2 * np.pi * 5 * t[a:a + 150])[:, None]
    if sh:
        labels[50:120, 0] = 1
    labels[labels.sum(1) == 0, 2] = 0
    return Recording(acc=acc, rate_hz=rate, units="g", labels=labels, mask=np.ones(n, bool),
                     meta={"name": f"r{seed}", "subject": subject})


class TinyNet(nn.Module):
    """(B, patch*3, n_patches) -> logits (B, n_patches, 3), with a Linear and a GRU for to_qat to convert."""

    def __init__(self, c_in=12, hidden=8):
        super().__init__()
        self.proj = nn.Linear(c_in, hidden)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        h = torch.relu(self.proj(x.transpose(1, 2)))
        h, _ = self.rnn(h)
        return self.head(h)


def test_reader_yields_limit_windows_in_batches_and_rewinds_to_the_same():
    recs = [toy_recording(i, subject=f"s{i}") for i in range(3)]
    reader = WindowReader(recs, SPEC, limit=50, seed=7, batch_size=16)
    batches = []
    while (b := reader.get_next()) is not None:
        batches.append(b["x"])
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    assert batches[0].shape[1:] == (12, 16) and batches[0].dtype == np.float32
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["x"], batches[0])
    again = WindowReader(recs, SPEC, limit=50, seed=7, batch_size=16)
    np.testing.assert_array_equal(again.get_next()["x"], batches[0])
    other = WindowReader(recs, SPEC, limit=50, seed=8, batch_size=16)
    assert not np.array_equal(other.get_next()["x"], batches[0])
    info = reader.describe()
    assert info["limit"] == 50 and info["subjects"] == ["s0", "s1", "s2"]
    assert info["preprocess"]["patch"] == 4


def test_sampling_spreads_over_recordings_and_covers_rare_classes():
    recs = [prepare_recording(toy_recording(i, sh=(i == 2)), SPEC, name=f"r{i}") for i in range(3)]
    windows = sample_windows(recs, SPEC, count=30, seed=0, class_share=0.5)
    per_recording = {name: sum(o[0] == name for o in windows.origin) for name in ("r0", "r1", "r2")}
    assert per_recording == {"r0": 10, "r1": 10, "r2": 10}
    positives = windows.labels.max(axis=1).sum(axis=0)   # windows containing each class
    assert positives[0] >= 1 and positives[1] >= 5
    # Window normalization came from deploy.preprocess: each window is z-scored per axis.
    raw = windows.x.reshape(30, 4, 3, 16).transpose(0, 3, 1, 2).reshape(30, 64, 3)
    np.testing.assert_allclose(raw.mean(axis=1), 0, atol=1e-5)


def test_calibrate_fills_every_quantizer_and_the_cache_reapplies(tmp_path):
    from calibration.cache import CalibrationCache
    from calibration.ptq import agreement, apply_cache, calibrate
    from models.qat import quantizers, set_quantization, to_qat

    torch.manual_seed(0)
    model = TinyNet().eval()
    recs = [toy_recording(i, subject=f"s{i}") for i in range(2)]
    reader = WindowReader(recs, SPEC, limit=40, seed=0, batch_size=8)
    qat = to_qat(model, batch_size=8, seq_len=16)
    cache = calibrate(qat, reader, "entropy", progress=False)
    named = quantizers(qat)
    assert set(cache.amax) == set(named) and all(float(q.amax.min()) > 0 for q in named.values())
    weight = next(n for n, q in named.items() if q.axis == 0)
    assert len(cache.amax[weight]) == named[weight].channels
    assert cache.data["windows"] == 40 and cache.calibrator["method"] == "entropy"

    path = cache.save(tmp_path / "cal.json")
    fresh = to_qat(model, batch_size=8, seq_len=16)
    apply_cache(fresh, CalibrationCache.load(path))
    for name, q in quantizers(fresh).items():
        torch.testing.assert_close(q.amax, named[name].amax)
    set_quantization(fresh, True)
    windows = sample_windows([prepare_recording(r, SPEC) for r in recs], SPEC, count=20, seed=1)
    report = agreement(model, fresh, windows, classes=["StartHesitation", "Turn", "Walking"])
    assert 0 < report["max_abs_prob_error"] < 0.2, report
    assert report["mean_abs_prob_error"] <= report["max_abs_prob_error"]
    assert report["ap_int8"]["Turn"] is not None


@pytest.mark.parametrize("method", ["percentile", "entropy", "mse", "max"])
def test_a_quantizer_no_window_reaches_gets_a_placeholder_not_an_error(method, tmp_path):
    """One step per window (a tsai_compat model at batch 1 runs its RNN over the batch axis: one step) never reaches
    the hidden-state quantizer: the first step has no recurrent MatMul. Issue 18 item 2: this raised
    `ValueError: percentile calibrator saw no data`."""
    from calibration.cache import CalibrationCache
    from calibration.data import BatchReader
    from calibration.ptq import UNUSED_AMAX, active_quantizers, apply_cache, calibrate
    from models.qat import quantizers, to_qat

    torch.manual_seed(0)
    model = TinyNet().eval()
    qat = to_qat(model, batch_size=1, seq_len=1)
    batches = [np.random.default_rng(i).normal(size=(1, 12, 1)).astype(np.float32) for i in range(4)]
    cache = calibrate(qat, BatchReader(batches), method, progress=False)
    assert cache.unused == ["rnn.hidden_quantizers.l0"] and cache.data["windows"] == 4
    assert cache.amax["rnn.hidden_quantizers.l0"] == UNUSED_AMAX
    assert "rnn.hidden_quantizers.l0" not in active_quantizers(qat, (1, 12, 1))
    assert active_quantizers(qat, (1, 12, 1)) == set(quantizers(qat)) - set(cache.unused)
    again = CalibrationCache.load(cache.save(tmp_path / "cal.json"))
    assert again.unused == cache.unused
    apply_cache(to_qat(model, batch_size=1, seq_len=1), again)
    # at two steps the same quantizer is live: a longer window reaches it
    assert "rnn.hidden_quantizers.l0" in active_quantizers(to_qat(model, 1, 2), (1, 12, 2))


def test_reader_over_files_kaggle_csv_and_npz(tmp_path):
    from deploy.recording import read_recordings as load_recordings, write_recording

    write_recording(toy_recording(0, rate=100.0, subject="a"), tmp_path / "one.csv", "defog")
    write_recording(toy_recording(1, subject="b"), tmp_path / "two.npz", "npz")
    # a dataset folder's metadata (as `toolkit synth --out-dir` and Kaggle write it) is not a recording
    (tmp_path / "metadata.csv").write_text("Id,Subject\none,a\n")
    (tmp_path / "events.csv").write_text("Id,Init,Completion,Type,Kinetic\n")
    recordings = load_recordings([tmp_path])
    # A CSV is named after its file; an npz keeps the name and subject stored in it.
    assert [r.meta["name"] for r in recordings] == ["one", "r1"] and recordings[1].meta["subject"] == "b"
    reader = WindowReader(recordings, SPEC, limit=8, batch_size=8)
    assert reader.get_next()["x"].shape == (8, 12, 16)
    with pytest.raises(Exception, match="no such file"):
        load_recordings([tmp_path / "absent.csv"])


def test_reader_over_a_users_mapped_files(mobgap_dir):
    from deploy.recording import read_recordings as load_recordings

    files = sorted(mobgap_dir.rglob("*Test5_Trial1.csv"))[:2]
    recordings = load_recordings(files, mapping="mobgap")
    reader = WindowReader(recordings, SPEC, limit=6, batch_size=6)
    x = reader.get_next()["x"]
    assert x.shape == (6, 12, 16) and np.isfinite(x).all()
    assert reader.get_next() is None
