"""What the TransformerRNNPlus family attends and recurs over: time by default, the batch with tsai_compat=True."""
from __future__ import annotations

import pytest
import torch

from models import TransformerGRUPlus, TransformerLSTMPlus, TransformerRNNPlus

KWARGS = dict(c_in=5, c_out=3, seq_len=20, d=20, d_model=32, nhead=4, num_encoder_layers=2, dim_feedforward=64,
              num_rnn_layers=1, bidirectional=True)


def _model(cls, **kwargs):
    torch.manual_seed(0)
    return cls(**{**KWARGS, **kwargs}).eval()


def _run(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("cls", [TransformerRNNPlus, TransformerLSTMPlus, TransformerGRUPlus],
                         ids=lambda c: c.__name__)
def test_default_mode_keeps_samples_independent(cls):
    model = _model(cls)
    x = torch.randn(4, 5, 20)
    changed = x.clone()
    changed[2] += torch.randn(5, 20)
    before, after = _run(model, x), _run(model, changed)
    others = [0, 1, 3]
    assert torch.allclose(before[others], after[others], atol=1e-5)
    assert (before[2] - after[2]).abs().max() > 1e-3
    # A sample alone gives what it gives inside a batch.
    assert torch.allclose(_run(model, x[1:2]), before[1:2], atol=1e-5)


@pytest.mark.parametrize("cls", [TransformerRNNPlus, TransformerLSTMPlus, TransformerGRUPlus],
                         ids=lambda c: c.__name__)
def test_default_mode_is_over_time(cls):
    """Changing a late step changes earlier outputs (attention and the backward RNN carry it back)."""
    for bidirectional in (True, False):
        model = _model(cls, bidirectional=bidirectional)
        x = torch.randn(2, 5, 20)
        changed = x.clone()
        changed[:, :, 17] += 3.0
        before, after = _run(model, x), _run(model, changed)
        assert (before[:, :10] - after[:, :10]).abs().max() > 1e-3


def test_tsai_compat_couples_the_batch_and_not_time():
    model = _model(TransformerLSTMPlus, tsai_compat=True)
    x = torch.randn(4, 5, 20)
    changed = x.clone()
    changed[2] += torch.randn(5, 20)
    before, after = _run(model, x), _run(model, changed)
    assert (before[[0, 1, 3]] - after[[0, 1, 3]]).abs().max() > 1e-3     # other samples move: batch coupling
    # Time is never mixed in tsai's forward: changing step 17 changes only step 17's output.
    late = x.clone()
    late[:, :, 17] += 3.0
    moved = (_run(model, late) - before).abs().amax(dim=(0, 2))
    assert moved[17] > 1e-3
    assert moved[torch.arange(20) != 17].max() < 1e-5


def test_tsai_compat_at_batch_size_one_is_position_wise():
    """At batch 1 tsai's backbone sees each time step alone: two inputs that agree at step t agree at t's output."""
    model, default = _model(TransformerGRUPlus, tsai_compat=True), _model(TransformerGRUPlus)
    x, other = torch.randn(1, 5, 20), torch.randn(1, 5, 20)
    other[:, :, 7] = x[:, :, 7]
    assert torch.allclose(_run(model, x)[:, 7], _run(model, other)[:, 7], atol=1e-5)
    assert (_run(model, x)[:, 8] - _run(model, other)[:, 8]).abs().max() > 1e-3
    assert (_run(default, x)[:, 7] - _run(default, other)[:, 7]).abs().max() > 1e-3


def test_modes_share_weights():
    default, compat = _model(TransformerLSTMPlus), _model(TransformerLSTMPlus, tsai_compat=True)
    compat.load_state_dict(default.state_dict(), strict=True)
    x = torch.randn(3, 5, 20)
    assert not torch.allclose(_run(default, x), _run(compat, x), atol=1e-3)
