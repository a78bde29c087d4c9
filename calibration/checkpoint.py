"""Checkpoints: a plain fp32 state_dict (`.pt`) with a JSON beside it saying what it is.

`<name>.pt` loads with `torch.load(..., weights_only=True)` into `models.create_model(preset)`; `<name>.json`
holds the preset name, the preprocessing, the training data description, the seed and figures. The bundled
default model is such a pair in `models/weights/`.
"""
from __future__ import annotations

import json
from pathlib import Path

from deploy.errors import FogError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights"
DEFAULT_PRESET = "fog-small"


def default_checkpoint(preset: str = DEFAULT_PRESET) -> Path | None:
    """The committed checkpoint for `preset`, if the project ships one."""
    path = WEIGHTS_DIR / f"{preset}.pt"
    return path if path.exists() else None


def checkpoint_info(path) -> dict:
    """The JSON that sits beside a checkpoint ({} when there is none)."""
    side = Path(path).with_suffix(".json")
    return json.loads(side.read_text()) if side.exists() else {}


def load_model(preset: str | None = None, checkpoint=None, default_weights: bool = True):
    """(model, preset_name, checkpoint path or None). The preset comes from the checkpoint's JSON if not given;
    with no checkpoint the project's default weights for the preset are used when `default_weights`."""
    import torch

    from models import create_model

    if checkpoint is None and default_weights:
        checkpoint = default_checkpoint(preset or DEFAULT_PRESET)
    info = checkpoint_info(checkpoint) if checkpoint else {}
    preset = preset or info.get("preset") or DEFAULT_PRESET
    try:
        model = create_model(preset)
    except KeyError as exc:
        from models import list_presets
        raise FogError(f"unknown preset {preset!r} ({exc}); choose one of {list_presets()}") from None
    if checkpoint:
        path = Path(checkpoint)
        if not path.exists():
            raise FogError(f"{path}: no such checkpoint (train one with `toolkit train`)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickle or zip error deep in torch: say what to do instead
            raise FogError(f"{path}: not a readable state_dict checkpoint ({type(exc).__name__}: {exc})") from None
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]                     # a training run's last.pt
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise FogError(f"{path} does not fit preset {preset!r}: {str(exc).splitlines()[0]} "
                           "(pass the --preset the checkpoint was trained with)") from None
    model.eval()
    return model, preset, (Path(checkpoint) if checkpoint else None)


def save_checkpoint(model, path, info: dict) -> Path:
    """Write `path` (fp32 state_dict) and `path.with_suffix('.json')` (info)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    torch.save(state, path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return path
