"""Checkpoints: fp32 weights (`.pt`) with a JSON beside it saying what they are.

The project's one weights loader (`read_weights`, `fit_weights`, `load_model`): every command that reads weights
(export, evaluate, calibrate, train, the model report) unwraps them with the same rules. Two forms, both loadable
with `torch.load(..., weights_only=True)`:
- plain: a state_dict for `models.create_model(preset)` (the bundled default in `models/weights/`, which the
  registry points at);
- project: `{"preset", "state_dict", "preprocess", "classes"}` (what `toolkit train` writes as `model.pt`, so
  `toolkit export --model runs/x/model.pt` knows the preset without the JSON); after `toolkit train --qat` also
  `"qat"`: the learnt ranges (`CalibrationCache.to_dict()` form, tied to these weights by `model_hash`), which
  export ships as they are.
`<name>.json` holds the preset name, the training data description, the seed and figures.
"""
from __future__ import annotations

import json
from pathlib import Path

from deploy.errors import FogError
from deploy.lazy import lazy_import

torch = lazy_import("torch", "workstation", "loading PyTorch weights")
models = lazy_import("models", "workstation", "the model registry")

DEFAULT_PRESET = "fog-small-x3"   # the bundled default: three fog-small networks in one graph (models.ensemble)


def default_checkpoint(preset: str = DEFAULT_PRESET) -> Path | None:
    """The committed checkpoint for `preset`, if the project ships one (the registry knows where)."""
    return models.pretrained_path(preset)


def checkpoint_info(path) -> dict:
    """The JSON that sits beside a checkpoint ({} when there is none)."""
    side = Path(path).with_suffix(".json")
    return json.loads(side.read_text()) if side.exists() else {}


# Layouts whose readers give one untyped "freeze" label (deploy.daphnet, deploy.stanford, deploy.stanford_xlsx): how a
# checkpoint written before `label_kinds` (calibration.data.describe_recordings) says it learnt from untyped freezes.
UNTYPED_SOURCES = ("daphnet", "stanford")


def trained_event_mode(info: dict) -> tuple[str | None, str]:
    """(events.mode, why) from a checkpoint's JSON (`checkpoint_info`), None when it does not say what the model was
    trained on. The rule: "any" when any training recording labelled freezes untyped (Daphnet, Stanford: the loss
    on those windows trains the largest class only, calibration.train.fog_loss, so on real freezes the classes are
    not types and several may cross their thresholds in one freeze); "per_class" when every labelled training
    recording carried the three types."""
    data = info.get("train_data") if isinstance(info, dict) else None
    if not isinstance(data, dict):
        return None, "the checkpoint does not say what it was trained on"
    kinds = data.get("label_kinds")
    if kinds is None:   # written before label_kinds: the readers it names say it
        untyped = [s for s in data.get("sources", []) if str(s).startswith(UNTYPED_SOURCES)]
        kinds = {"untyped": len(untyped), "typed": 0 if untyped else len(data.get("sources", []))}
        where = f"its training sources {sorted(data.get('sources', []))}"
    else:
        where = f"its training recordings ({', '.join(f'{v} {k}' for k, v in kinds.items() if v)})"
    if kinds.get("untyped"):
        return "any", f"{where} label freezes untyped: one any-FOG event per freeze"
    if kinds.get("typed"):
        return "per_class", f"{where} carry the three freeze types: one event stream per class"
    return None, f"{where} hold no labelled freezes"


def trained_on(path) -> dict | None:
    """What the checkpoint at `path` says its weights were trained on ({"recordings": [{name, subject, sha256 or
    data_sha256}], "subjects": [...]}, from the JSON beside it: `train_data` and any `synthetic_train_subjects`);
    None when it says nothing. Older checkpoints name their recordings without a content hash."""
    if not path:
        return None
    info = checkpoint_info(path)
    data = info.get("train_data") or {}
    subjects = sorted({str(s) for s in (data.get("subjects") or [])} |
                      {str(s) for s in (info.get("synthetic_train_subjects") or [])})
    recordings = data.get("fingerprints") or [{"name": str(n)} for n in (data.get("names") or [])]
    return {"recordings": recordings, "subjects": subjects} if subjects or recordings else None


def read_weights(path) -> tuple[dict, dict]:
    """(state_dict, what the file says about itself) from any weights file of the project, with one set of rules:
    `{"state_dict": ...}` (a project checkpoint, which also names its preset, preprocess and classes), `{"model":
    ...}` (a training run's last.pt, or a fastai/tsai `learn.save()` file: its `opt` entry is ignored), else the file is the state_dict itself (plain, or saved by tsai)."""
    path = Path(path)
    if not path.is_file():
        raise FogError(f"{path}: weights file not found (train one with `toolkit train`, or check the path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle or zip error deep in torch: say what to do instead
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise FogError(f"{path}: not a readable weights file ({type(exc).__name__}: {first}); give a state_dict saved "
                       "with torch.save(model.state_dict(), path), or a model.pt from `toolkit train`") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        return state["state_dict"], {k: state[k] for k in ("preset", "preprocess", "classes", "qat") if state.get(k)}
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return split_qat_state(state["model"])
    return split_qat_state(state)


def split_qat_state(state) -> tuple[dict, dict]:
    """A QAT variant's state_dict (float weights plus `*_quantizer.amax` ranges, e.g. `model_qat.pt` of `toolkit
    train --qat`) -> (the float weights, {"qat": {"amax": ranges}}); any other state is returned as it is."""
    if not isinstance(state, dict) or not any(str(k).endswith("quantizer.amax") for k in state):
        return state, {}
    ranges = {k[:-len(".amax")]: v.tolist() for k, v in state.items() if str(k).endswith("quantizer.amax")}
    floats = {k: v for k, v in state.items() if not str(k).endswith(("quantizer.amax", "quantizer.calib_amax"))}
    return floats, {"qat": {"amax": ranges}}


def fit_weights(module, state: dict, path, fix: str) -> None:
    """Load `state` into `module` (strict); weights that do not fit raise FogError, naming `path`, ending in `fix`."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise FogError(f"{path}: the weights do not fit the model ({first}); {fix}") from None


def load_model(preset: str | None = None, checkpoint=None, default_weights: bool = True):
    """(model, preset_name, checkpoint path or None), in eval mode. The preset is `preset`, else the one the
    checkpoint names (inside, or its JSON), else DEFAULT_PRESET. With no checkpoint the project's default weights for
    the preset are loaded when `default_weights` (and the project ships them)."""
    if checkpoint is None and default_weights:
        checkpoint = default_checkpoint(preset or DEFAULT_PRESET)
    state, named = None, {}
    if checkpoint:
        checkpoint = Path(checkpoint)
        state, named = read_weights(checkpoint)
    preset = preset or named.get("preset") or (checkpoint_info(checkpoint).get("preset") if checkpoint else None) \
        or DEFAULT_PRESET
    if preset not in models.list_presets():
        raise FogError(f"unknown preset {preset!r}; choose one of {models.list_presets()}")
    model = models.create_model(preset)
    if state is not None:
        fit_weights(model, state, checkpoint, f"pass the --model (preset) the checkpoint was trained with ({preset!r} was used)")
    model.eval()
    return model, preset, checkpoint


def save_checkpoint(model, path, info: dict, plain: bool = False, qat_ranges: dict | None = None) -> Path:
    """Write `path` (fp32 weights: project form, or a plain state_dict) and `path.with_suffix('.json')` (info).
    `qat_ranges` (a QAT run's learnt ranges, `CalibrationCache.to_dict()` form) go into the project form as `qat`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    if not plain:
        preset = models.get_preset(info["preset"])
        state = {"preset": preset.name, "state_dict": state, "preprocess": dict(preset.preprocess),
                 "classes": list(preset.classes), **({"qat": qat_ranges} if qat_ranges else {})}
    torch.save(state, path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return path
