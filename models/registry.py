"""Named model configurations (timm-style): `create_model("fog-small")`.

A preset is data: the model class, its keyword arguments, the preprocessing the model expects (a dict for
`deploy.preprocess.PreprocessSpec.from_dict`), its class names and its family. Every FOG preset follows the
per-patch contract: input (batch, patch * 3, n_patches) -> logits (batch, n_patches, len(classes)), i.e. a head with
d = seq_len (the hybrids) or a per-step Linear (`RecurrentClassifier(per_step=True)`, the baselines and SCRN).
Every family of the zoo has a preset (FAMILIES).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .ensemble import LogitMean
from .heads import output_dims
from .recurrent import RecurrentClassifier
from .rnn_attention import GRUAttentionPlus, LSTMAttentionPlus, RNNAttentionPlus
from .transformer_rnn import TransformerGRUPlus, TransformerLSTMPlus, TransformerRNNPlus

# deploy.recording.CLASSES, spelled out here because models/ imports torch only.
FOG_CLASSES = ("StartHesitation", "Turn", "Walking")

# The zoo's families (docs/models.md); each has at least one preset. The recurrent baselines and SCRN are built as
# RecurrentClassifier(kind=...): their family is the recurrent layer, not the wrapper.
FAMILIES = ("TransformerRNNPlus", "TransformerLSTMPlus", "TransformerGRUPlus",
            "RNNAttentionPlus", "LSTMAttentionPlus", "GRUAttentionPlus", "RNN", "GRU", "LSTM", "SCRN")
_KIND_FAMILY = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM", "scrn": "SCRN"}


class UnknownPreset(KeyError):
    def __str__(self) -> str:       # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Preset:
    name: str
    factory: type[nn.Module]
    kwargs: dict = field(default_factory=dict)
    preprocess: dict = field(default_factory=dict)
    classes: tuple = FOG_CLASSES
    description: str = ""
    family: str = ""        # one of FAMILIES; by default the factory's name (RecurrentClassifier: its kind's)
    events: dict = field(default_factory=dict)  # event settings chosen for the preset's recipe (over the contract's)

    def __post_init__(self):
        if not self.family:
            family = (_KIND_FAMILY[self.kwargs.get("kind", "lstm")] if self.factory is RecurrentClassifier
                      else self.factory.__name__)
            object.__setattr__(self, "family", family)

    def io_shapes(self, batch: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(input shape, output shape) of the model, from the preset's data alone (no model is built)."""
        spec, kwargs = self.preprocess, self.kwargs
        features, steps = spec["patch"] * 3, spec["n_patches"]
        x = (batch, steps, features) if spec.get("layout") == "BTC" else (batch, features, steps)
        if self.factory is RecurrentClassifier:
            classes = kwargs["num_classes"]
            return x, (batch, steps, classes) if kwargs.get("per_step") else (batch, classes)
        c_out, d = kwargs["c_out"], kwargs.get("d")
        if d is None:
            return x, (batch,) if c_out == 1 else (batch, c_out)
        return x, (batch, *output_dims(c_out, d))


def _fog_preprocess(**spec) -> dict:
    return {"layout": "BCT", **spec}


_PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    if preset.name in _PRESETS:
        raise ValueError(f"preset {preset.name!r} is already registered")
    _PRESETS[preset.name] = preset
    return preset


register(Preset(
    name="fog-small",
    factory=TransformerLSTMPlus,
    kwargs=dict(c_in=24, c_out=3, seq_len=128, d=128, d_model=64, nhead=4, num_encoder_layers=2,
                dim_feedforward=128, num_rnn_layers=1, bidirectional=True, dropout=0.1, input_zscore=True,
                fi_blend=0.25, fi_kwargs={"rate_hz": 64.0, "power_weight": 1.0, "eps": 1e-6}),
    # min_std 1 g: each window is centred but keeps its amplitude (walking's std is 0.1-0.3 g), so the freeze-index
    # logit sees the band power in g^2; the learnt part z-scores the window inside the graph (input_zscore), as it
    # was trained. fi_blend, power_weight and the event thresholds were chosen on the LOSO folds (MODEL_CARD.md).
    # gravity_align + horizontal "principal" (issue 25): each window is turned so gravity lies on -AccV and the
    # horizontal plane on its principal axes: the input, and so every decision, is the same however the sensor is worn.
    preprocess=_fog_preprocess(rate_hz=64, units="g", patch=8, n_patches=128, normalization="window", scale=1.0,
                               min_std=1.0, gravity_align=True, horizontal="principal"),
    # chosen on the folds of both labs (calibration.blend_choice by models/weights/CHOICE_RULE_ROUND3.md) at a 1 s
    # look-ahead, not inherited; the look-ahead goes with them (export's look-ahead sweep shows what others do)
    events={"on": 0.4, "off": 0.25, "lookahead_s": 1.0},
    description="the bundled default's first network alone (seed 0), fast on CPU: 16 s window at 64 Hz in 125 ms "
                "patches; 2 encoder layers (64 wide, 4 heads) + 1 BiLSTM, per-patch logits, plus 0.25 x a fixed "
                "freeze-index logit with a band-power term (models.spectral; no parameters); input in each window's "
                "own frame (gravity, principal horizontal axes), so it does not depend on how the sensor is worn"))

# The bundled default (issue 25, models/weights/CHOICE_RULE_ROUND4.md): three networks of fog-small's recipe
# (seeds 0, 1, 2) in one graph, their logits averaged, the fixed freeze-index logit and the window z-score computed
# once (models.ensemble). Three times fog-small's engine work; fog-small alone (seed 0) stays registered.
register(Preset(
    name="fog-small-x3",
    factory=LogitMean,
    kwargs={"member": "TransformerLSTMPlus", "n_members": 3, **_PRESETS["fog-small"].kwargs},
    family="TransformerLSTMPlus",
    preprocess=dict(_PRESETS["fog-small"].preprocess),
    events={"on": 0.3, "off": 0.15, "lookahead_s": 1.0},
    description="bundled default: three fog-small networks (seeds 0-2 of its recipe) in one graph, logits averaged, "
                "plus 0.25 x the fixed freeze-index logit once; the same input and window as fog-small"))

register(Preset(
    name="fog-1st-place",
    factory=TransformerLSTMPlus,
    kwargs=dict(c_in=54, c_out=3, seq_len=864, d=864, d_model=324, nhead=6, num_encoder_layers=5,
                dim_feedforward=324, num_rnn_layers=2, bidirectional=True, dropout=0.1),
    preprocess=_fog_preprocess(rate_hz=128, units="m/s^2", patch=18, n_patches=864, normalization="recording",
                               scale=25.0),
    description="shaped like the Kaggle 1st place (tdcsfog): 864 patches of 18 samples x 3 axes at 128 Hz, "
                "5 encoder layers, 2 BiLSTM layers, feed-forward = width; width 324 instead of 320 because "
                "6 heads must divide it (tsai-style layers: the 2nd BiLSTM is twice as wide)"))

# fog-small's recipe at three times the width with a second BiLSTM (3.6 M parameters; recurrent weights 0.6 M per
# direction in the second layer): large enough that the recurrence has real weight matrices, small enough to train
# on one CPU core in ~20 min, so the CPU plans' agreement with float is measured on trained weights (issue 17).
register(Preset(
    name="fog-small-wide",
    factory=TransformerLSTMPlus,
    kwargs={**_PRESETS["fog-small"].kwargs, "d_model": 192, "dim_feedforward": 384, "num_rnn_layers": 2},
    preprocess=dict(_PRESETS["fog-small"].preprocess),
    events=dict(_PRESETS["fog-small"].events),
    description="fog-small's recipe at 3x the width (192, 4 heads, feed-forward 384) with 2 BiLSTM layers "
                "(192 and 384 per direction): 3.6 M parameters, for measuring the CPU plans on trained weights"))

# fog-small's windows in fog-small's frame (gravity, principal horizontal axes: however the sensor is worn)
_SMALL_WINDOWS = _fog_preprocess(rate_hz=64, units="g", patch=8, n_patches=128, normalization="window", scale=1.0,
                                 gravity_align=True, horizontal="principal")

register(Preset(
    name="fog-lstm-attention",
    factory=LSTMAttentionPlus,
    kwargs=dict(c_in=24, c_out=3, seq_len=128, d=128, hidden_size=32, bidirectional=True, encoder_layers=2,
                n_heads=4, d_ff=128, flatten=False, use_bn=False),
    preprocess=dict(_SMALL_WINDOWS),
    description="recurrence first, attention second (tsai LSTMAttentionPlus, BatchNorm TST layers) on "
                "fog-small's windows; per-patch logits"))


# --- one small preset per remaining family, all on fog-small's windows ------------------------------------------
_TRANSFORMER_RNN = dict(c_in=24, c_out=3, seq_len=128, d=128, d_model=64, nhead=4, num_encoder_layers=2,
                        dim_feedforward=128, num_rnn_layers=1, bidirectional=True, dropout=0.1)
_RNN_ATTENTION = dict(c_in=24, c_out=3, seq_len=128, d=128, hidden_size=32, bidirectional=True, encoder_layers=2,
                      n_heads=4, d_ff=128, flatten=False, use_bn=False)
# The baselines: RecurrentClassifier made per-patch (a Linear on every step) and channels-first (the zoo's layout).
_BASELINE = dict(input_size=24, hidden_size=64, num_classes=3, num_layers=2, per_step=True, channels_first=True,
                 seq_len=128)

for _name, _factory, _kwargs, _what in (
        ("fog-rnn-transformer", TransformerRNNPlus, _TRANSFORMER_RNN, "fog-small with a BiRNN instead of the BiLSTM"),
        ("fog-gru-transformer", TransformerGRUPlus, _TRANSFORMER_RNN, "fog-small with a BiGRU instead of the BiLSTM"),
        ("fog-rnn-attention", RNNAttentionPlus, _RNN_ATTENTION, "fog-lstm-attention with a BiRNN"),
        ("fog-gru-attention", GRUAttentionPlus, _RNN_ATTENTION, "fog-lstm-attention with a BiGRU")):
    _layers = ("2 encoder layers (64 wide, 4 heads)" if _kwargs is _TRANSFORMER_RNN
               else "recurrence first, 2 BatchNorm TST layers second")
    register(Preset(name=_name, factory=_factory, kwargs=dict(_kwargs), preprocess=dict(_SMALL_WINDOWS),
                    description=f"{_what} ({_factory.__name__}): {_layers}; per-patch logits"))

for _kind in ("rnn", "gru", "lstm"):
    register(Preset(
        name=f"fog-{_kind}", factory=RecurrentClassifier, kwargs=dict(_BASELINE, kind=_kind, bidirectional=True),
        preprocess=dict(_SMALL_WINDOWS),
        description=f"plain baseline: 2 Bi{_kind.upper()} layers (64 per direction) over the patches, a Linear on "
                    "every patch (RecurrentClassifier per_step); per-patch logits"))

# The context kernel starts Xavier-uniform, not torchrecurrent's N(0, 1): with 64 context units N(0, 1) drives the
# sigmoid and tanh of a fresh model into saturation, which amplifies quantization error ~10x (an untrained fog-scrn
# failed the INT8 verification: agreement 0.973 < 0.98; Xavier: mean |diff| 0.0006 instead of 0.006).
register(Preset(
    name="fog-scrn", factory=RecurrentClassifier,
    kwargs=dict(_BASELINE, kind="scrn", bidirectional=False,
                encoder_kwargs={"context_kernel_init": "xavier_uniform"}),
    preprocess=dict(_SMALL_WINDOWS),
    description="2 SCRN layers (64, torchrecurrent semantics, Xavier context kernel) over the patches, a Linear on "
                "every patch; unidirectional, so each patch's logits see only the past (causal); per-patch logits"))
del _name, _factory, _kwargs, _what, _layers, _kind


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    """The preset `name` (a copy: changing its dicts does not change the registry)."""
    try:
        preset = _PRESETS[name]
    except KeyError:
        raise UnknownPreset(f"unknown preset {name!r}; presets: {', '.join(list_presets())}") from None
    return copy.deepcopy(preset)


# Trained weights the project ships: models/weights/<preset>.pt (a plain fp32 state_dict) + <preset>.json.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def pretrained_path(name: str) -> Path | None:
    """The shipped checkpoint of preset `name`, or None when the project ships none."""
    get_preset(name)  # unknown names fail here, with the list of presets
    path = WEIGHTS_DIR / f"{name}.pt"
    return path if path.is_file() else None


def create_model(name: str, **overrides) -> nn.Module:
    """Build preset `name` with keyword overrides (e.g. tsai_compat=True, dropout=0.0), with fresh weights.

    A per-patch preset stays per-patch when only seq_len is overridden: d follows seq_len.
    Weights are loaded by the project's one weights loader, `calibration.checkpoint.load_model(name)` (the shipped
    ones, see `pretrained_path`, or any checkpoint): this package knows where they are, not how files are read.
    """
    if "pretrained" in overrides:
        raise TypeError("create_model() builds fresh weights; load the shipped or any other weights with "
                        f"calibration.checkpoint.load_model({name!r}[, checkpoint])")
    preset = get_preset(name)
    kwargs = {**preset.kwargs, **overrides}
    per_patch = preset.kwargs.get("d") == preset.kwargs.get("seq_len")
    if per_patch and "seq_len" in overrides and "d" not in overrides:
        kwargs["d"] = kwargs["seq_len"]
    return preset.factory(**kwargs)
