"""Parity with tsai 1.0.1 and torchrecurrent 0.2.5 on reference fixtures made by the real packages.

The fixtures (random weights, BatchNorm statistics and SCRN alpha) come from `fixtures/reference/make_fixtures.py`,
run in a throwaway venv; the project itself never imports tsai or torchrecurrent. Each reference state_dict must
load with strict=True and reproduce the reference eval output to 1e-5.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "reference").glob("*.pt"))
TOLERANCE = 1e-5


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _flatten(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    return [t for part in output for t in _flatten(part)]


def test_fixtures_cover_every_family():
    families = {}
    for path in FIXTURES:
        record = _load(path)
        families.setdefault(record["family"], set()).add(record["cls"])
    assert families == {
        "transformer_rnn": {"TransformerRNNPlus", "TransformerLSTMPlus", "TransformerGRUPlus"},
        "rnn_attention": {"RNNAttentionPlus", "LSTMAttentionPlus", "GRUAttentionPlus"},
        "scrn": {"SCRN", "SCRNCell"},
    }
    assert sum(p.stat().st_size for p in FIXTURES) < 1_000_000


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_reference_outputs_are_reproduced(path):
    record = _load(path)
    kwargs = dict(record["kwargs"])
    if record["tsai_compat"]:
        kwargs["tsai_compat"] = True
    model = getattr(models, record["cls"])(**kwargs)
    model.load_state_dict(record["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        args = (record["input"],) if record["state"] is None else (record["input"], record["state"])
        got = _flatten(model(*args))
    expected = _flatten(record["output"])
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert (g - e).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("path", [p for p in FIXTURES if p.stem.startswith("transformer_lstm_perstep")],
                         ids=lambda p: p.stem)
def test_default_semantics_differ_from_tsai_forward(path):
    """The same tsai weights in the default (time-axis) mode compute something else: the switch matters."""
    record = _load(path)
    model = getattr(models, record["cls"])(**record["kwargs"])
    model.load_state_dict(record["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        got = model(record["input"])
    assert (got - record["output"]).abs().max().item() > 1e-3
