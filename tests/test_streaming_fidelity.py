"""Issue 14: background classes (no event on them; any-FOG as the sum or max of the event classes), the stream
normalizations of deploy.wearer (chunk-invariant, the wearer's statistics kept across restarts), and export's
streaming-fidelity figures, including a deliberately mismatched normalization being reported."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.bundle import Bundle
from deploy.counters import Counters
from deploy.errors import FogError
from deploy.contract.model import OutputSection
from deploy.contract.runtime import StreamingSection
from deploy.event_classes import any_fog, check_background, event_columns
from deploy.preprocess import PreprocessSpec
from deploy.sources import Chunk
from deploy.stream import Pipeline, StreamSettings
from deploy.wearer import BlockNormalizer, FixedNormalizer, stream_setup
from toolkit.cli import main as cli

CLASSES = ["StartHesitation", "Turn", "Walking", "NoEvent"]


def test_any_fog_sums_or_maxes_the_event_classes_only():
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.05, 0.95]])
    cols = event_columns(CLASSES, ["NoEvent"])
    assert cols == [0, 1, 2]
    assert np.allclose(any_fog(p, cols, "sum"), [0.6, 0.05])
    assert np.allclose(any_fog(p, cols, "max"), [0.3, 0.05])
    old = OutputSection.from_dict({"classes": CLASSES})   # an old bundle: no background, "max"
    assert (old.event_columns, old.any_fog) == ([0, 1, 2, 3], "max")
    with pytest.raises(FogError, match="not one of the model's classes"):
        check_background(CLASSES, ["Nothing"])
    with pytest.raises(FogError, match="leave at least one event class"):
        check_background(["A"], ["A"])


class ConstantEngine:
    """A per-sample model that always says "no event" (0.94) with a little of each event class (0.02)."""
    backend = "test"

    def __init__(self, window: int):
        self.input_shape, self.output_shape = (1, window, 3), (1, window, 4)
        self.input_buffer = np.zeros(self.input_shape, np.float32)
        self.out = np.tile(np.array([0.02, 0.02, 0.02, 0.94], np.float32), (1, window, 1))

    def infer(self, x):
        return self.out


@pytest.mark.parametrize("columns, expected", [(None, {"NoEvent"}), ((0, 1, 2), set())])
def test_the_daemon_raises_no_event_on_a_background_class(columns, expected):
    spec = PreprocessSpec(rate_hz=50, units="g", patch=1, n_patches=100, normalization="window", layout="BTC")
    events = []
    pipe = Pipeline(spec, ConstantEngine(spec.window), CLASSES, Counters(),
                    StreamSettings(source_units="g", event_columns=columns),
                    on_event=lambda kind, ev, decided: events.append(ev))
    t = np.arange(500) / 50.0
    pipe.push(Chunk(t, np.random.default_rng(0).normal(size=(500, 3))))
    pipe.end_segment()
    assert {ev.cls for ev in events} == expected


def test_block_normalizer_is_chunk_invariant_with_a_warm_up_and_fixed_is_plain():
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(700, 3))
    whole = BlockNormalizer(50, tau_s=30)(x)
    norm = BlockNormalizer(50, tau_s=30)
    pieces = np.concatenate([norm(x[a:b]) for a, b in [(0, 7), (7, 60), (60, 333), (333, 700)]])
    assert np.array_equal(whole, pieces)
    assert whole[0].tolist() == [0.0, 0.0, 0.0] and np.all(np.abs(whole[5:50]) > 0)   # warm-up, not zeros
    assert np.allclose(FixedNormalizer([2, 2, 2], [3, 3, 3])(x), (x - 2) / 3)


def test_wearer_statistics_are_captured_once_and_kept_across_restarts(tmp_path):
    state = tmp_path / "wearer.json"
    x = np.random.default_rng(2).normal(1.0, 2.0, size=(600, 3))
    first = BlockNormalizer(50, tau_s=None, capture_s=4, state_path=state)
    out = first(x)
    saved = json.loads(state.read_text())
    assert np.allclose(saved["mean"], x[:200].mean(axis=0)) and np.allclose(saved["std"], x[:200].std(axis=0))
    assert np.allclose(out[200:], (x[200:] - x[:200].mean(axis=0)) / x[:200].std(axis=0))
    restarted = BlockNormalizer(50, tau_s=None, capture_s=4, state_path=state)   # the daemon restarts
    assert restarted.frozen
    assert np.allclose(restarted(x[:10]), (x[:10] - x[:200].mean(axis=0)) / x[:200].std(axis=0))
    spec = PreprocessSpec(rate_hz=50, units="g", patch=1, n_patches=100, normalization="recording", layout="BTC")
    stream_spec, factory = stream_setup(spec, StreamingSection(normalization="wearer", capture_s=4), state)
    assert stream_spec.normalization == "running" and factory() is factory()   # one wearer across segments
    state.write_text("{}")
    with pytest.raises(FogError, match="delete it to capture"):
        BlockNormalizer(50, tau_s=None, capture_s=4, state_path=state)


def test_the_daemon_takes_event_classes_and_stream_normalization_from_the_manifest(tmp_path):
    from deploy.daemon import wearer_setup
    output = OutputSection.from_dict({"classes": CLASSES, "background": ["NoEvent"], "any_fog": "sum"})
    assert output.event_columns == [0, 1, 2] and output.event_classes == CLASSES[:3]
    streaming = StreamingSection.from_dict({"normalization": "wearer", "capture_s": 60})
    spec = PreprocessSpec(rate_hz=50, units="g", patch=1, n_patches=100, normalization="recording", layout="BTC")
    stream_spec, settings = wearer_setup(spec, streaming, tmp_path / "w.json", StreamSettings(source_units="g"))
    assert stream_spec.normalization == "running" and settings.normalizer().capture_blocks == 60
    old_spec, old = wearer_setup(spec, None, None, StreamSettings(source_units="g"))
    assert old_spec is spec and old.normalizer is None   # an old bundle: as before


def _export(tmp_path, name, *extra):
    out = tmp_path / name
    rc = cli(["export", "--model", "tests.fixtures.user_models:tiny_bigru", "--rate-hz", "50", "--classes",
              ",".join(CLASSES), "--activation", "softmax", "--n-patches", "128", "--target", "cpu",
              "--verify-windows", "2", "--out", str(out), "--quiet", *extra])
    assert rc == 0
    return Bundle.load(out).manifest


def test_export_records_streaming_fidelity_and_reports_a_mismatched_normalization(tmp_path, capsys):
    matched = _export(tmp_path, "matched", "--normalization", "window", "--background-class", "NoEvent")
    assert matched["output"]["background"] == ["NoEvent"] and matched["output"]["any_fog"] == "sum"
    st = matched["streaming"]
    assert st["normalization"] == "declared" and st["declared"] == "window"
    f = st["fidelity"]
    assert f["passed"] and f["mean_abs_prob_diff"] < 1e-5 and f["decision_agreement"] == 1.0
    assert f["difference_pp"] == 0.0 and f["background_events"] == 0
    assert "factory provides its own weights" in matched["model"]["notes"][0]   # tiny_bigru seeds itself
    from calibration.cache import model_hash
    from tests.fixtures.user_models import tiny_bigru
    # the one weights fingerprint: what calibration caches and QAT checkpoints are tied to
    assert matched["model"]["weights_sha256"] == model_hash(tiny_bigru())
    capsys.readouterr()
    # evaluate reads the background class from the bundle: the three event classes are scored, summed
    assert cli(["evaluate", "--synthetic", "1", "--synthetic-minutes", "1", "--bundle", str(tmp_path / "matched"),
                "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert "ap" in result and result["any_fog"]["percent_time_called_fog"] >= 0
    # deliberately mismatched: a model declared per-window z-scored, streamed with fixed statistics
    bad = _export(tmp_path, "mismatched", "--normalization", "window", "--background-class", "NoEvent",
                  "--stream-normalization", "fixed")
    f = bad["streaming"]["fidelity"]
    assert bad["streaming"]["normalization"] == "fixed" and not f["passed"]
    assert f["mean_abs_prob_diff"] > 0.05 and f["decision_agreement"] <= 1.0
    assert "WARNING: streamed differs from offline" in capsys.readouterr().err


def test_fidelity_step_skips_itself_when_one_inference_puts_it_over_budget():
    """fog-1st-place's case (issue 17): the estimate (one timed inference x windows x (offline + options)) decides."""
    import time as _time

    import numpy as _np

    from deploy.recording import Recording
    from toolkit.export.streaming import _over_budget

    class SlowEngine:
        input_shape = (1, 3, 4)

        def __init__(self, seconds):
            self.seconds = seconds

        def infer(self, x):
            _time.sleep(self.seconds)
            return x

    recs = [Recording(acc=_np.zeros((60 * 64, 3)), rate_hz=64.0, units="g")]          # 60 s: 120 windows at a 0.5 s hop
    assert _over_budget(SlowEngine(0.0), recs, ["declared"], 0.5, 120.0) is None
    why = _over_budget(SlowEngine(0.05), recs, ["a", "b", "c"], 0.5, 10.0)  # 480 x 0.05 s = 24 s > 10 s
    assert why.startswith("not measured") and "480 inferences" in why and "10 s budget" in why
    assert "--fidelity-budget-s" in why
