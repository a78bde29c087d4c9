"""SCRN takes unbatched (L, H_in) input like torch's RNNs (issue 18, item 1).

Unbatched in, unbatched out: output (L, H), h_n and s_n (num_layers, H); `batch_first` does not apply to unbatched
input (as in torch). The reference is torchrecurrent 0.2.5's step (fixtures made with the real package): an
unbatched sequence gives exactly what the same sequence gives as one column of a batch.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import SCRN

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reference"


def _seeded(**kwargs) -> SCRN:
    torch.manual_seed(0)
    return SCRN(10, 20, **kwargs).eval()


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input_gives_unbatched_output(batch_first):
    model = _seeded(num_layers=2, batch_first=batch_first)
    x = torch.randn(5, 10)
    with torch.no_grad():
        output, (h_n, s_n) = model(x)
        as_batch = model(x.unsqueeze(0) if batch_first else x.unsqueeze(1))
    assert tuple(output.shape) == (5, 20)
    assert tuple(h_n.shape) == tuple(s_n.shape) == (2, 20)
    batch_output = as_batch[0][0] if batch_first else as_batch[0][:, 0]
    torch.testing.assert_close(output, batch_output, rtol=0, atol=0)
    torch.testing.assert_close(h_n, as_batch[1][0][:, 0], rtol=0, atol=0)
    torch.testing.assert_close(s_n, as_batch[1][1][:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input_with_initial_states(batch_first):
    model = _seeded(num_layers=2, batch_first=batch_first)
    x, h0, s0 = torch.randn(5, 10), torch.randn(2, 20), torch.randn(2, 20)
    with torch.no_grad():
        output, (h_n, s_n) = model(x, (h0, s0))
        batch_x = x.unsqueeze(0) if batch_first else x.unsqueeze(1)
        reference, (h_ref, s_ref) = model(batch_x, (h0.unsqueeze(1), s0.unsqueeze(1)))
    assert tuple(output.shape) == (5, 20) and tuple(h_n.shape) == (2, 20)
    torch.testing.assert_close(output, reference[0] if batch_first else reference[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(h_n, h_ref[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(s_n, s_ref[:, 0], rtol=0, atol=0)
    # the state really is used
    assert not torch.allclose(output, model(x)[0])


def test_unbatched_matches_torchrecurrent_fixture():
    """One column of the torchrecurrent fixture (initial state given, biases off), run unbatched."""
    record = torch.load(FIXTURES / "scrn_nobias_with_state.pt", weights_only=False)
    model = SCRN(**record["kwargs"]).eval()
    model.load_state_dict(record["state_dict"], strict=True)
    x, (h0, s0) = record["input"], record["state"]               # (L, N, H_in), (num_layers, N, H)
    expected, (h_ref, s_ref) = record["output"]
    for column in range(x.shape[1]):
        with torch.no_grad():
            output, (h_n, s_n) = model(x[:, column], (h0[:, column], s0[:, column]))
        torch.testing.assert_close(output, expected[:, column], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(h_n, h_ref[:, column], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s_n, s_ref[:, column], rtol=1e-5, atol=1e-5)


def test_unbatched_matches_the_cell_step_by_step():
    model = _seeded(num_layers=1)
    x = torch.randn(4, 10)
    h = s = None
    steps = []
    with torch.no_grad():
        for t in range(4):
            h, s = model.cells[0](x[t], None if h is None else (h, s))     # the cell's own unbatched path
            steps.append(h)
        output, (h_n, s_n) = model(x)
    torch.testing.assert_close(output, torch.stack(steps), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h_n[0], h, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(s_n[0], s, rtol=1e-6, atol=1e-6)


def test_state_rank_must_match_the_input_like_torch():
    model = _seeded(num_layers=2)
    with pytest.raises(RuntimeError, match="unbatched 2-D input"):
        model(torch.randn(5, 10), (torch.zeros(2, 1, 20), torch.zeros(2, 1, 20)))
    with pytest.raises(RuntimeError, match="batched 3-D input"):
        model(torch.randn(5, 3, 10), (torch.zeros(2, 20), torch.zeros(2, 20)))


def test_wrong_rank_or_width_is_refused():
    model = _seeded()
    with pytest.raises(ValueError, match="2-D"):
        model(torch.randn(10))
    with pytest.raises(ValueError, match="input_size"):
        model(torch.randn(5, 7))                 # the feature axis is not taken for a batch any more


def test_qat_variant_takes_unbatched_input_too():
    from models.qat import to_qat
    model = _seeded(num_layers=2, batch_first=True)
    x, h0, s0 = torch.randn(5, 10), torch.randn(2, 20), torch.randn(2, 20)
    qat = to_qat(model, batch_size=1, seq_len=5).eval()       # quantizers disabled: computes the float model
    with torch.no_grad():
        for state in (None, (h0, s0)):
            expected, (h_ref, s_ref) = model(x, state)
            output, (h_n, s_n) = qat(x, state)
            assert tuple(output.shape) == (5, 20) and tuple(h_n.shape) == (2, 20)
            torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(s_n, s_ref, rtol=1e-5, atol=1e-5)
