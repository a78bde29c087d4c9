"""The bundled default is a seed ensemble (models.ensemble.LogitMean): its graph computes the mean of its members'
blended logits, the choice scored it as that graph computes it, and member weights that do not fit are refused."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from calibration.blend_choice import replay  # noqa: E402
from calibration.ensemble_terms import mean_calls  # noqa: E402
from deploy.errors import FogError  # noqa: E402
from models import create_model  # noqa: E402


def _members(n=3):
    nets = []
    for seed in range(n):
        torch.manual_seed(seed)
        nets.append(create_model("fog-small").eval())
    return nets


def _windows(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 24, 128, generator=g) * 0.2


def test_the_ensemble_is_the_mean_of_its_members_blended_logits():
    members, x = _members(), _windows()
    ensemble = create_model("fog-small-x3").load_members([m.state_dict() for m in members]).eval()
    with torch.no_grad():
        want = torch.stack([m(x) for m in members]).mean(0)      # each member adds the same fixed term
        got = ensemble(x)
        apart = min(float((got - m(x)).abs().max()) for m in members)
    assert got.shape == (4, 128, 3)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert apart > 1e-2          # and it is not any one member


def test_the_choice_scores_an_ensemble_as_its_graph_computes_it():
    """calibration.blend_choice --ensemble averages the members' recorded window logits, then blends: the
    probabilities it scores are the ensemble graph's (float32 rounding apart)."""
    from models.spectral import FreezeIndexLogit

    members, x = _members(), _windows(1)
    ensemble = create_model("fog-small-x3").load_members([m.state_dict() for m in members]).eval()
    plain_fi = FreezeIndexLogit(8, rate_hz=64.0, eps=1e-6)
    powered = FreezeIndexLogit(8, rate_hz=64.0, eps=1e-6, power_weight=1.0)
    with torch.no_grad():
        base, pw = plain_fi(x).numpy(), (powered(x) - plain_fi(x)).numpy()
        member_calls = []
        for m in members:
            m.fi_blend = 0.0          # the network's own logits, as window_terms records them
            member_calls.append([(m(x).numpy(), base, pw)])
        scored = replay(mean_calls(member_calls), blend=0.25, power=1.0)(None)
        graph = torch.sigmoid(ensemble(x)).numpy()
    assert np.abs(scored - graph).max() < 1e-5


def test_mismatched_members_are_refused():
    with pytest.raises(ValueError, match="different numbers of window batches"):
        mean_calls([[(np.zeros(1), 0, 0)], [(np.zeros(1), 0, 0)] * 2])


def test_member_weights_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    from calibration.ensemble_weights import build

    good = tmp_path / "good.pt"
    torch.save(create_model("fog-small").state_dict(), good)
    wide = tmp_path / "wide.pt"
    torch.save(create_model("fog-small-wide").state_dict(), wide)
    with pytest.raises(SystemExit, match="has 3 members; 2 checkpoints given"):
        build("fog-small-x3", [str(good), str(good)])
    with pytest.raises(FogError, match="wide.pt: the weights do not fit"):
        build("fog-small-x3", [str(good), str(wide), str(good)])
    with pytest.raises(SystemExit, match="not an ensemble preset"):
        build("fog-small", [str(good)])
    model, info = build("fog-small-x3", [str(good)] * 3)
    assert len(info["members"]) == 3 and all(torch.equal(a, b) for a, b in zip(
        model.members[0].state_dict().values(), model.members[2].state_dict().values()))
