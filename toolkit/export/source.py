"""Resolve what the user named (`--model`) into a torch module plus the facts the bundle needs.

Accepted forms:
- a registry preset:            `fog-small`                (its trained weights when the registry ships them)
- a checkpoint of this project: `path/to/model.pt`         (a dict with the preset name and a state_dict)
- a tsai checkpoint:            `--tsai` + preset + `--weights tsai_state_dict.pth` (loaded with tsai_compat=True)
- a user's own model:           `package.module:factory` + `--weights` (+ preprocess/classes flags)
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from calibration.cache import CalibrationCache, model_hash
from calibration.checkpoint import checkpoint_info, fit_weights, read_weights, trained_on
from deploy.bundle import sha256_file
from deploy.contract import CLASSES
from deploy.errors import FogError
from deploy.event_classes import check_background, default_rule
from deploy.lazy import TOOLKIT_PACKAGES, lazy_import
from deploy.preprocess import PreprocessSpec

models = lazy_import("models", "workstation", "the model registry")
torch = lazy_import("torch", "workstation", "fingerprinting a factory's weights")

# A user model says nothing about its preprocessing: these are the defaults the flags override.
USER_PREPROCESS = {"rate_hz": 100.0, "units": "g", "patch": 1, "n_patches": 256, "normalization": "window",
                   "scale": 1.0, "layout": "BTC"}


class ModelSourceError(FogError):
    """The model named on the command line cannot be loaded; the message says why and what to pass instead."""


@dataclass
class ModelSource:
    module: object                    # torch.nn.Module, in eval mode
    name: str
    kind: str                         # preset | checkpoint | tsai | user
    preset: str | None
    preprocess: dict                  # PreprocessSpec.to_dict() form
    classes: tuple[str, ...]
    activation: str = "sigmoid"
    tsai_compat: bool = False
    weights_sha256: str | None = None
    weights_path: str | None = None
    notes: list[str] = field(default_factory=list)
    factory: dict | None = None       # a user model: {"path": "package.module:factory", "kwargs": {...}}
    background: tuple[str, ...] = ()  # classes that are not events (deploy.event_classes)
    any_fog: str = "max"              # how "any FOG" is formed from the event classes: max | sum
    qat_ranges: CalibrationCache | None = None  # the learnt ranges of a QAT checkpoint (`toolkit train --qat`)
    events: dict = field(default_factory=dict)  # the preset's event settings (flags override them, then defaults)
    info: dict = field(default_factory=dict)    # the checkpoint's JSON (what it was trained on), {} when none
    trained_on: dict | None = None    # what the checkpoint says the weights were trained on (calibration.checkpoint)

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.preprocess)

    @property
    def window(self) -> int:
        return self.spec.window

    def input_shape(self, batch: int) -> tuple[int, int, int]:
        return (batch, *self.spec.input_shape[1:])

    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


# What to check when weights do not fit (fit_weights ends its message with it).
_FIT = ("check the model name/factory, its arguments, and --n-patches (a learned positional embedding fixes the "
        "window)")


def _load_weights(module, path) -> CalibrationCache | None:
    """Load the weights file into `module`; returns the QAT ranges the file carries, if any."""
    state, info = read_weights(path)
    fit_weights(module, state, path, _FIT)
    return qat_ranges(info, module, path)


def qat_ranges(info: dict, module, path) -> CalibrationCache | None:
    """The ranges a QAT result carries (`qat` in a `toolkit train --qat` model.pt, with the hash of the fine-tuned
    weights; or the quantizer buffers of a bare QAT state_dict, which come with these very weights)."""
    raw = info.get("qat")
    if not raw:
        return None
    if "schema" not in raw:   # a bare QAT state_dict: ranges and weights are one file, so they fit by construction
        raw = {"schema": 1, "amax": raw["amax"], "model_hash": model_hash(module),
               "calibrator": {"method": "unknown (a bare QAT state_dict)"}, "data": {}}
    return CalibrationCache.from_dict(raw, f"{path} (its QAT ranges)")


def _preset_module(name: str, overrides: dict):
    try:
        preset = models.get_preset(name)
    except (KeyError, ValueError) as exc:
        known = ", ".join(models.list_presets())
        raise ModelSourceError(f"unknown model {name!r} ({exc}); presets: {known}; or give a checkpoint file or "
                               "module:factory") from None
    return preset, models.create_model(name, **overrides)


def _patch_overrides(preset, n_patches: int | None) -> dict:
    """Model kwargs for a different number of patches (the zoo's seq_len is n_patches)."""
    if n_patches is None:
        return {}
    key = next((k for k in ("seq_len", "n_patches") if k in preset.kwargs), "seq_len")
    return {key: int(n_patches)}


UNTRAINED_FIX = "--untrained (untrained=True) exports the preset's architecture with random initial weights on purpose"


def from_preset(name: str, *, weights=None, n_patches=None, tsai=False, pretrained=True,
                untrained: bool = False) -> ModelSource:
    """A preset: its shipped weights unless `weights` are given. Where the shipped ones cannot load (another
    `n_patches`), the export is refused unless `untrained` says random initial weights are what is wanted."""
    preset = models.get_preset(name)
    overrides = _patch_overrides(preset, n_patches)
    if tsai:
        overrides["tsai_compat"] = True
    _, module = _preset_module(name, overrides)
    preprocess = dict(preset.preprocess)
    if n_patches is not None:
        preprocess["n_patches"] = int(n_patches)
    notes = []
    resized = n_patches is not None and int(n_patches) != int(preset.preprocess["n_patches"])
    shipped = models.pretrained_path(name) if pretrained and not weights else None
    if shipped is not None and resized and not untrained:
        # A learned positional embedding is as long as the training window: the shipped weights cannot load.
        raise ModelSourceError(
            f"{name}'s shipped weights are for n_patches={preset.preprocess['n_patches']} (a learned positional "
            f"embedding fixes the window): with --n-patches {n_patches} the bundle would carry random initial weights "
            f"and detect nothing. Drop --n-patches, give --weights trained at {n_patches} patches, or {UNTRAINED_FIX}")
    if shipped is not None and untrained:
        notes.append(f"random initial weights: asked for (--untrained), not the shipped checkpoint"
                     + (f" (for n_patches={preset.preprocess['n_patches']}, this export uses {n_patches})"
                        if resized else ""))
        shipped = None
    weights = Path(weights) if weights else shipped
    ranges = _load_weights(module, weights) if weights is not None else None
    if weights is None and not notes:
        notes.append("random initial weights: the project ships no trained checkpoint for this preset")
    return ModelSource(module=module.eval(), name=name, kind="tsai" if tsai else "preset", preset=name,
                       preprocess=preprocess, classes=tuple(preset.classes), tsai_compat=bool(tsai),
                       events=dict(preset.events), weights_sha256=sha256_file(weights) if weights else None,
                       weights_path=str(weights) if weights else None, notes=notes, qat_ranges=ranges,
                       info=checkpoint_info(weights) if weights else {}, trained_on=trained_on(weights))


def from_checkpoint(path, *, n_patches=None) -> ModelSource:
    """A checkpoint written by `toolkit train`: {'preset', 'state_dict', 'preprocess', 'classes'}, or a plain
    state_dict with `<name>.json` beside it naming the preset."""
    state, inside = read_weights(path)
    side = Path(path).with_suffix(".json")
    side_info = json.loads(side.read_text()) if side.is_file() else {}
    name = inside.get("preset") or side_info.get("preset")
    if not name:
        raise ModelSourceError(f"{path}: not a checkpoint of this project (no preset inside nor in {side.name}); "
                               "for a bare state_dict pass --model PRESET --weights FILE or --model module:factory")
    preset = models.get_preset(name)
    module = models.create_model(name, **_patch_overrides(preset, n_patches))
    fit_weights(module, state, path, _FIT)
    preprocess, notes = _amplitude_for_power_term(module, dict(inside.get("preprocess") or preset.preprocess),
                                                  preset, path)
    if n_patches is not None:
        preprocess["n_patches"] = int(n_patches)
    classes = inside.get("classes") or preset.classes
    return ModelSource(module=module.eval(), name=Path(path).stem, kind="checkpoint", preset=name,
                       preprocess=preprocess, classes=tuple(classes), weights_sha256=sha256_file(path),
                       events=dict(inside.get("events") or preset.events), notes=notes,
                       weights_path=str(path), qat_ranges=qat_ranges(inside, module, path), info=side_info,
                       trained_on=trained_on(path))


def _amplitude_for_power_term(module, preprocess: dict, preset, path) -> tuple[dict, list[str]]:
    """A checkpoint's preprocess that scales each window to unit std (written before the preset kept the amplitude)
    would feed the fixed freeze-index logit's power term (models.spectral, in g^2) a meaningless power. Its learnt
    part z-scores the window inside the graph (input_zscore), which gives a z-scored window back unchanged, so the
    preset's amplitude floor serves the checkpoint exactly as trained: taken, and said in the notes."""
    power = getattr(getattr(module, "freeze_index", None), "power_weight", 0.0)
    wanted = preset.preprocess.get("min_std", 0.0)
    if not power or preprocess.get("min_std", 0.0) >= wanted:
        return preprocess, []
    if getattr(module, "input_zscore", None) is None:
        raise ModelSourceError(f"{path}: its preprocess scales each window to unit std (min_std "
                               f"{preprocess.get('min_std', 0.0)}), but the model's freeze-index power term needs "
                               f"the amplitude in g (min_std {wanted}): re-train it with the {preset.name} preset's "
                               "preprocess (`toolkit train --model " + preset.name + "`)")
    return {**preprocess, "min_std": wanted}, [
        f"preprocess min_std {preprocess.get('min_std', 0.0)} -> {wanted} (the {preset.name} preset's): the "
        "checkpoint predates the power term's amplitude; its learnt part z-scores in the graph, so it sees the "
        "same input as in training"]


def import_user_module(module_name: str, folder=None):
    """The user's module for `module:factory`, without shadowing the toolkit's own top-level packages.

    A module (or package) found in `folder` (default: the working folder) is loaded from its file under a private
    name (`_fog_user_<sha>.<name>`), so a `models.py` next to the user never replaces the toolkit's `models` package
    in `sys.modules`. The folder is appended to `sys.path` (never put first), so the user's module can still import
    its sibling files, and only after the toolkit's own packages (TOOLKIT_PACKAGES) are imported, so none of its files
    can stand in for one later. Anything else is imported as usual (an installed package, or one on PYTHONPATH)."""
    # Once a package is in sys.modules its submodules come from its own folder, so no `models.py` of the user's can
    # stand in for it later, however the toolkit was installed (an editable install's finder is asked after sys.path)
    for package in TOOLKIT_PACKAGES:
        importlib.import_module(package)
    folder = Path(folder or Path.cwd()).resolve()
    top, _, rest = module_name.partition(".")
    package, single = folder / top / "__init__.py", folder / f"{top}.py"
    if not package.is_file() and not (single.is_file() and not rest):
        return importlib.import_module(module_name)
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    private = f"_fog_user_{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}_{top}"
    if private not in sys.modules:
        location = package if package.is_file() else single
        spec = importlib.util.spec_from_file_location(
            private, location, submodule_search_locations=[str(location.parent)] if location == package else None)
        module = importlib.util.module_from_spec(spec)
        sys.modules[private] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[private]
            raise
    return importlib.import_module(private + (f".{rest}" if rest else ""))


def from_factory(spec: str, *, weights=None, preprocess: dict | None = None, classes=None,
                 activation="sigmoid", factory_kwargs: dict | None = None) -> ModelSource:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ModelSourceError(f"{spec!r}: a user model is given as package.module:factory")
    try:
        factory = getattr(import_user_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        clash = str(getattr(exc, "name", None) or "").partition(".")[0]
        fix = (f"your code imports {clash!r}, which is the toolkit's own package of that name: rename your module "
               "(or import it relative to your package)") if clash in TOOLKIT_PACKAGES else \
            "run from the folder that holds the module or add it to PYTHONPATH"
        raise ModelSourceError(f"cannot import {spec!r} ({exc}); {fix}") from None
    module = build_user_model(spec, factory, factory_kwargs or {})
    ranges = _load_weights(module, weights) if weights else None
    state_sha, note = (None, None) if weights else _factory_weights(factory, factory_kwargs or {}, module)
    spec_dict = {**USER_PREPROCESS, **(preprocess or {})}
    return ModelSource(module=module.eval(), name=attr, kind="user", preset=None, preprocess=spec_dict,
                       classes=tuple(classes or CLASSES), activation=activation,
                       weights_sha256=sha256_file(weights) if weights else state_sha,
                       weights_path=str(weights) if weights else None, notes=[note] if note else [],
                       factory={"path": spec, "kwargs": dict(factory_kwargs or {})}, qat_ranges=ranges,
                       trained_on=trained_on(weights))


def build_user_model(spec: str, factory, kwargs: dict):
    """`factory(**kwargs)`, which must be a model factory: a Python function or class returning a torch module. A
    built-in (`os:system`) is never called, and whatever goes wrong inside the call is said as the user's error."""
    if inspect.isbuiltin(factory) or not callable(factory) or \
            not (inspect.isfunction(factory) or inspect.isclass(factory) or inspect.ismethod(factory)):
        raise ModelSourceError(f"--model {spec!r} names a {type(factory).__name__}, not a model factory; give "
                               "package.module:function (or a class) that returns a torch.nn.Module")
    try:
        module = factory(**kwargs)
    except Exception as exc:
        raise ModelSourceError(f"--model {spec!r}: calling it with --factory-kwargs {kwargs} failed "
                               f"({type(exc).__name__}: {exc}); give a factory that builds a torch.nn.Module from "
                               "these arguments") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelSourceError(f"--model {spec!r} returned a {type(module).__name__}, not a torch.nn.Module; give a "
                               "factory that builds the model")
    return module


def _factory_weights(factory, kwargs: dict, module) -> tuple[str, str]:
    """(sha256 of the exported state, a note saying whose weights they are): a factory that gives the same state
    when built again under another random seed loads (or seeds) its own weights; else its random initial ones."""
    sha = model_hash(module)
    with torch.random.fork_rng():
        torch.manual_seed(torch.initial_seed() + 12345)
        again = model_hash(factory(**kwargs))
    if again == sha:
        return sha, (f"no --weights: the factory provides its own weights (the same on every build: loaded or "
                     f"seeded by the factory); exported as they are, state sha256 {sha[:16]}")
    return sha, ("no --weights: the factory's random initial weights were exported (they differ on every build; "
                 "pass --weights FILE for trained ones)")


def resolve(model: str, *, weights=None, n_patches=None, tsai=False, preprocess=None, classes=None,
            activation=None, factory_kwargs=None, background=None, any_fog=None, untrained: bool = False) -> ModelSource:
    """Dispatch on the form of `model` (see the module docstring). Input-spec flags (`preprocess`) describe a user
    model; on trained weights (a preset's, a checkpoint's) they may not change what the weights were trained on
    unless `untrained`."""
    if ":" in model and not Path(model).exists():
        source = from_factory(model, weights=weights, preprocess={**(preprocess or {}),
                                                                  **({"n_patches": n_patches} if n_patches else {})},
                              classes=classes, activation=activation or "sigmoid", factory_kwargs=factory_kwargs)
    elif Path(model).is_file():
        if tsai:
            raise ModelSourceError("--tsai takes a preset (--model fog-1st-place) and the tsai state_dict as "
                                   "--weights")
        source = from_checkpoint(model, n_patches=n_patches)
    else:
        if model not in models.list_presets():
            raise ModelSourceError(f"unknown model {model!r}: not a preset ({', '.join(models.list_presets())}), "
                                   "not a file, not module:factory")
        source = from_preset(model, weights=weights, n_patches=n_patches, tsai=tsai, untrained=untrained)
    if activation:
        source.activation = activation
    if preprocess and source.kind != "user":
        _check_trained_spec(source, preprocess, untrained)
        source.preprocess.update(preprocess)
    mark_background(source, background, any_fog)
    return source


def _check_trained_spec(source: ModelSource, preprocess: dict, untrained: bool) -> None:
    """Refuse input-spec values that differ from what trained weights were trained on (the bundle would feed them
    another signal: a 64 Hz model told its input is 50 Hz detects at the wrong time scale, silently)."""
    if untrained or source.weights_sha256 is None:
        return
    changed = {k: v for k, v in preprocess.items() if k in source.preprocess and source.preprocess[k] != v}
    if changed:
        said = ", ".join(f"{k} {source.preprocess[k]!r} -> {v!r}" for k, v in changed.items())
        raise ModelSourceError(f"{source.name}'s weights were trained on another input ({said}): the flags for a user "
                               "model's input (--rate-hz --units --patch --input-layout --normalization) may not "
                               f"change a trained model's. Drop them, or {UNTRAINED_FIX}")


def mark_background(source: ModelSource, background=None, any_fog=None) -> None:
    """Background classes from --background-class, else the model's own `background_classes` attribute; the
    any-FOG rule from --any-fog, else sum for a softmax model with a background class, max otherwise."""
    named = background or getattr(source.module, "background_classes", None) or ()
    source.background = tuple(check_background(source.classes, list(named)))
    source.any_fog = any_fog or default_rule(source.activation, source.background)
