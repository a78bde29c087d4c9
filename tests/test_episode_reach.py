"""calibration.episode_reach: how far each held-out freeze is from being found."""
import numpy as np

from calibration.episode_reach import episode_peaks, reach, table
from deploy.recording import Recording

RATE = 64.0


def _recording(subject, lab, freezes, n_s=60.0, mask=None):
    n = int(n_s * RATE)
    labels = np.zeros((n, 3))
    for a, b in freezes:
        labels[int(a * RATE):int(b * RATE), 2] = 1.0
    return Recording(acc=np.zeros((n, 3)), rate_hz=RATE, units="g", labels=labels, mask=mask,
                     meta={"subject": subject, "lab": lab, "id": f"{subject}-{len(freezes)}"})


def _scores(n, quiet, bumps):
    p = np.full(n, quiet)
    for (a, b), value in bumps:
        p[int(a * RATE):int(b * RATE)] = value
    return p


def test_peaks_and_ranks_are_each_persons_own():
    # A scores everything low: its freeze peaks at 0.08, below every threshold, yet above all of A's FOG-free samples
    # (rank 1). B is loud: a 0.5 blip on walking, and its freeze at 0.3 ranks under most of B's FOG-free samples.
    a = _recording("A", "lab1", [(10, 12)])
    b = _recording("B", "lab2", [(20, 24)])
    pa = _scores(a.n_samples, 0.01, [((10, 12), 0.08)])
    pb = _scores(b.n_samples, 0.6, [((20, 24), 0.3), ((40, 41), 0.5)])
    found = {e.subject: e for e in episode_peaks([a, b], [pa, pb])}
    assert found["A"].peak == 0.08 and found["A"].rank == 1.0
    assert found["A"].duration_s == 2.0 and found["A"].start_s == 10.0
    assert found["B"].peak == 0.3 and found["B"].rank == 0.0
    figures = reach(list(found.values()), (0.05, 0.2))
    assert figures["subjects"]["A"]["reach"] == {"0.05": 1, "0.2": 0}
    assert figures["subjects"]["B"]["under_own_median"] == 1 and figures["subjects"]["A"]["under_own_median"] == 0
    assert figures["labs"]["lab1"]["needed"] == 1          # 0.7 of one episode rounds up
    assert "| **lab1** | 1 | 1 | 1 | 0 | 0 |" in table(figures, (0.05, 0.2))


def test_invalid_samples_neither_make_an_episode_nor_its_peak_nor_a_rank():
    # the freeze's second half is masked out, where the score is 0.9: the peak is the valid half's 0.4; the masked
    # stretch's 0.95 is not one of the person's FOG-free samples either
    rec = _recording("C", "lab1", [(10, 14)])
    mask = np.ones(rec.n_samples, bool)
    mask[int(12 * RATE):int(20 * RATE)] = False
    rec.mask = mask
    p = _scores(rec.n_samples, 0.1, [((10, 12), 0.4), ((12, 14), 0.9), ((14, 20), 0.95)])
    (episode,) = episode_peaks([rec], [p])
    assert episode.peak == 0.4 and episode.duration_s == 2.0 and episode.rank == 1.0
    # three-class probabilities: any-FOG is their max
    (same,) = episode_peaks([rec], [np.stack([p * 0.5, p, p * 0.1], axis=1)])
    assert same.peak == 0.4


def test_reach_counts_per_lab_and_person_and_the_bar_needs_seven_tenths():
    recs = [_recording(f"P{i}", "lab", [(5 * k + 1, 5 * k + 3) for k in range(5)]) for i in range(2)]
    probs = [_scores(r.n_samples, 0.0, [((5 * k + 1, 5 * k + 3), 0.1 * (k + 1)) for k in range(5)]) for r in recs]
    figures = reach(episode_peaks(recs, probs), (0.2, 0.5))
    assert figures["labs"]["lab"] == {"episodes": 10, "needed": 7, "reach": {"0.2": 8, "0.5": 2},
                                      "under_own_median": 0}
    assert figures["subjects"]["P1"]["reach"] == {"0.2": 4, "0.5": 1}


def test_found_is_the_event_scorers_overlap():
    # events touching an episode's edges, running into it, inside it, still open: found exactly as
    # deploy.metrics.event_metrics counts (an event must overlap the episode, not only touch it)
    from types import SimpleNamespace

    from deploy.metrics import event_metrics
    rec = _recording("D", "lab1", [(5, 7), (10, 12), (20, 22), (30, 32), (40, 42), (50, 52)])
    pairs = [(3.0, 5.0), (12.0, 14.0), (18.0, 20.5), (30.5, 31.0), (49.0, None)]    # (40, 42) has none
    found = [e.found for e in episode_peaks([rec], [np.zeros(rec.n_samples)], events=[pairs])]
    assert found == [False, False, True, True, False, True]
    events = [SimpleNamespace(onset_s=a, offset_s=b, detect_s=a) for a, b in pairs]
    assert event_metrics(rec.labels, events, RATE)["sensitivity"] == sum(found) / len(found)
    assert all(e.found is None for e in episode_peaks([rec], [np.zeros(rec.n_samples)]))
