"""calibration.data.sample_starts(by_episode=True): windows centred on each labelled episode alike, so a 2 s freeze
is drawn as often as a 60 s one (CHOICE_RULE_ROUND7.md); the default draws labelled samples alike."""
import numpy as np

from calibration.data import PreparedRecording, sample_starts

WINDOW = 256


def _recording():
    n = 20000
    labels = np.zeros((n, 3), np.float32)
    labels[2000:2128, 2] = 1.0        # a short episode: 128 samples
    labels[8000:15680, 2] = 1.0       # a long one: 60 times longer
    return PreparedRecording("r", "A", np.zeros((n, 3), np.float32), labels, np.ones(n, bool))


def _short_share(by_episode: bool) -> float:
    starts = sample_starts([_recording()], WINDOW, 4000, np.random.default_rng(0), class_share=1.0,
                           by_episode=by_episode)
    covers_short = [start <= 2063 < start + WINDOW for _, start in starts]   # the window holds the short one's middle
    return float(np.mean(covers_short))


def test_by_episode_draws_a_short_freeze_as_often_as_a_long_one():
    assert 0.4 < _short_share(True) < 0.6
    assert _short_share(False) < 0.05                                        # by sample: 1 of 61 draws

