"""Checkpoints: fp32 weights (`.pt`) with a JSON beside it saying what they are.

Two forms, both loadable with `torch.load(..., weights_only=True)`:
- plain: a state_dict for `models.create_model(preset)` (the bundled default in `models/weights/`, which the
  registry points at);
- project: `{"preset", "state_dict", "preprocess", "classes"}` (what `toolkit train` writes as `model.pt`, so
  `toolkit export --model runs/x/model.pt` knows the preset without the JSON).
`<name>.json` holds the preset name, the training data description, the seed and figures.
"""
from __future__ import annotations

import json
from pathlib import Path

from deploy.errors import FogError

DEFAULT_PRESET = "fog-small"


def default_checkpoint(preset: str = DEFAULT_PRESET) -> Path | None:
    """The committed checkpoint for `preset`, if the project ships one (the registry knows where)."""
    from models import pretrained_path

    return pretrained_path(preset)


def checkpoint_info(path) -> dict:
    """The JSON that sits beside a checkpoint ({} when there is none)."""
    side = Path(path).with_suffix(".json")
    return json.loads(side.read_text()) if side.exists() else {}


def _read_state(path: Path):
    """(state_dict, preset named inside or None) from either checkpoint form, or a training run's last.pt."""
    import torch

    if not path.exists():
        raise FogError(f"{path}: no such checkpoint (train one with `toolkit train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle or zip error deep in torch: say what to do instead
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise FogError(f"{path}: not a readable weights file ({type(exc).__name__}: {first}); give a state_dict saved "
                       "with torch.save(model.state_dict(), path), or a model.pt from `toolkit train`") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        return state["state_dict"], state.get("preset")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return state["model"], None
    return state, None


def load_model(preset: str | None = None, checkpoint=None, default_weights: bool = True):
    """(model, preset_name, checkpoint path or None), in eval mode. The preset is `preset`, else the one the
    checkpoint names (inside, or its JSON), else fog-small. With no checkpoint the project's default weights for
    the preset are loaded when `default_weights` (and the project ships them)."""
    from models import create_model, list_presets

    if checkpoint is None and default_weights:
        checkpoint = default_checkpoint(preset or DEFAULT_PRESET)
    state, named = (None, None)
    if checkpoint:
        checkpoint = Path(checkpoint)
        state, named = _read_state(checkpoint)
    preset = preset or named or (checkpoint_info(checkpoint).get("preset") if checkpoint else None) \
        or DEFAULT_PRESET
    try:
        model = create_model(preset)
    except KeyError:
        raise FogError(f"unknown preset {preset!r}; choose one of {list_presets()}") from None
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise FogError(f"{checkpoint} does not fit preset {preset!r}: {str(exc).splitlines()[0]} "
                           "(pass the --preset the checkpoint was trained with)") from None
    model.eval()
    return model, preset, checkpoint


def save_checkpoint(model, path, info: dict, plain: bool = False) -> Path:
    """Write `path` (fp32 weights: project form, or a plain state_dict) and `path.with_suffix('.json')` (info)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    if not plain:
        from models import get_preset
        preset = get_preset(info["preset"])
        state = {"preset": preset.name, "state_dict": state, "preprocess": dict(preset.preprocess),
                 "classes": list(preset.classes)}
    torch.save(state, path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return path
