"""LogitMean: several networks of one architecture on one input, their logits averaged, in one graph.

A seed ensemble: networks trained by the same recipe with different seeds disagree on single windows far more than
on average (issue 25: three seeds of the default's recipe differ by 0.033 in pooled AP on the second lab's people);
their mean logit is steadier than any one of them. The members are built without the parts that do not depend on
their weights, and the wrapper computes those once:

- the window z-score (`input_zscore`) is taken once and fed to every member;
- the fixed freeze-index logit (`fi_blend`, models.spectral) is added once to the mean, so the result equals the
  mean of the members' blended logits.

A member's state_dict is the single network's (its parameter names under `members.<i>.`), so networks trained one by
one load into the ensemble as they are (`load_members`). Exports as each member's graph, Adds and one Div; the QAT
conversion (models.qat.to_qat) replaces the members' layers as it would a single network's.
"""
from __future__ import annotations

import torch
from torch import nn

from .spectral import FreezeIndexLogit, WindowZScore
from .transformer_rnn import TransformerGRUPlus, TransformerLSTMPlus, TransformerRNNPlus

MEMBER_CLASSES = {cls.__name__: cls for cls in (TransformerRNNPlus, TransformerLSTMPlus, TransformerGRUPlus)}


class LogitMean(nn.Module):
    def __init__(self, member: str = "TransformerLSTMPlus", n_members: int = 3, fi_blend: float = 0.0,
                 fi_kwargs: dict | None = None, input_zscore: bool = False, **member_kwargs):
        super().__init__()
        if member not in MEMBER_CLASSES:
            raise ValueError(f"LogitMean member {member!r}: choose one of {', '.join(MEMBER_CLASSES)}")
        if int(n_members) < 1:
            raise ValueError(f"LogitMean needs at least one member (n_members={n_members})")
        factory = MEMBER_CLASSES[member]
        self.member, self.n_members = member, int(n_members)
        self.members = nn.ModuleList(factory(**member_kwargs) for _ in range(self.n_members))
        self.fi_blend = float(fi_blend)
        patch = member_kwargs["c_in"] // 3
        self.freeze_index = FreezeIndexLogit(patch=patch, **(fi_kwargs or {"rate_hz": 64.0})) if fi_blend else None
        self.input_zscore = WindowZScore() if input_zscore else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x if self.input_zscore is None else self.input_zscore(x)
        total = self.members[0](z)
        for m in self.members[1:]:
            total = total + m(z)
        logits = total / float(self.n_members)
        if self.freeze_index is not None:
            logits = logits + self.fi_blend * self.freeze_index(x)
        return logits

    def load_members(self, state_dicts: list[dict]) -> "LogitMean":
        """Load one single network's state_dict into each member, in order (strict: same architecture)."""
        if len(state_dicts) != self.n_members:
            raise ValueError(f"{len(state_dicts)} member weights for {self.n_members} members")
        for m, sd in zip(self.members, state_dicts):
            m.load_state_dict(sd)
        return self
