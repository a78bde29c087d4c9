"""What the API's `model` argument may be, turned into a `toolkit.export.source.ModelSource`: a name the command
line takes (preset, checkpoint file, package.module:factory), a ModelSource, or a `torch.nn.Module` object.

A module says nothing about its preprocessing, so `preprocess` fills in what it knows; what is missing comes from the
module where it can (a zoo model's `c_in` is patch*3 and `seq_len` its number of patches) and the user-model defaults
(toolkit.export.source.USER_PREPROCESS). The tensor layout, when not given, is found by running the module once on
zeros in each layout: exactly one must fit, else the error says what to pass.
"""
from __future__ import annotations

import dataclasses

from calibration.cache import model_hash
from deploy.contract import CLASSES
from deploy.errors import FogError, did_you_mean
from deploy.lazy import lazy_import
from deploy.preprocess import PreprocessSpec
from toolkit.export.source import USER_PREPROCESS, ModelSource, mark_background, resolve

torch = lazy_import("torch", "workstation", "exporting a PyTorch module")

LAYOUTS = ("BTC", "BCT")


class ModelArgumentError(FogError):
    """The model or its preprocess description cannot be used as given; the message says what to pass."""


def _is_module(model) -> bool:
    return hasattr(model, "state_dict") and hasattr(model, "forward") and callable(model)


def check_preprocess_keys(preprocess: dict) -> None:
    """Unknown keys refused with the nearest valid one (a typo must not silently fall back to a default)."""
    known = [f.name for f in dataclasses.fields(PreprocessSpec)]
    for key in preprocess:
        if key not in known:
            raise ModelArgumentError(f"preprocess key {key!r} is unknown ({did_you_mean(key, known)})")


def _from_module_attributes(module) -> dict:
    """patch and n_patches a zoo-style module declares (c_in = patch * 3 axes, seq_len = patches)."""
    found = {}
    c_in, seq_len = getattr(module, "c_in", None), getattr(module, "seq_len", None)
    if isinstance(c_in, int) and c_in % 3 == 0:
        found["patch"] = c_in // 3
    if isinstance(seq_len, int) and seq_len > 0:
        found["n_patches"] = seq_len
    return found


def _runs(module, shape) -> str | None:
    """None when the module runs on zeros of `shape`, else the first line of its error."""
    try:
        with torch.no_grad():
            module(torch.zeros(shape))
        return None
    except Exception as exc:  # any shape error, whatever layer raises it
        return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


def detect_layout(module, preprocess: dict) -> str:
    """The tensor layout the module accepts: BTC (batch, n_patches, patch*3) or BCT (batch, patch*3, n_patches)."""
    errors = {}
    for layout in LAYOUTS:
        shape = PreprocessSpec.from_dict({**preprocess, "layout": layout}).input_shape
        errors[layout] = (shape, _runs(module, shape))
    fits = [layout for layout, (_, error) in errors.items() if error is None]
    if len(fits) == 1:
        return fits[0]
    tried = "; ".join(f"{k} {tuple(shape)}: {err or 'runs'}" for k, (shape, err) in errors.items())
    if not fits:
        raise ModelArgumentError(f"the module runs on neither input layout ({tried}); give preprocess with the right "
                                 "patch, n_patches and layout ('BTC': (batch, n_patches, patch*3), 'BCT': (batch, "
                                 "patch*3, n_patches))")
    raise ModelArgumentError(f"the module runs on both input layouts ({tried}); say which it expects: "
                             "preprocess={'layout': 'BTC'} or {'layout': 'BCT'}")


def from_module(module, *, preprocess: dict | None = None, classes=None, activation: str = "sigmoid",
                name: str | None = None, background=None, any_fog=None) -> ModelSource:
    """A ModelSource for a torch module object (its weights as they are now)."""
    given = dict(preprocess or {})
    check_preprocess_keys(given)
    spec = {**USER_PREPROCESS, **_from_module_attributes(module), **given}
    module = module.eval()
    if "layout" not in given:
        spec["layout"] = detect_layout(module, spec)
    source = ModelSource(module=module, name=name or type(module).__name__, kind="user", preset=None,
                         preprocess=spec, classes=tuple(classes or CLASSES), activation=activation,
                         weights_sha256=model_hash(module))  # its weights as they are: fingerprinted
    mark_background(source, background, any_fog)
    return source


def as_source(model, *, weights=None, preprocess: dict | None = None, classes=None, activation=None,
              n_patches=None, tsai: bool = False, factory_kwargs=None, background=None, any_fog=None,
              untrained: bool = False) -> ModelSource:
    """`model` as a ModelSource: a ModelSource as it is; a module object (see `from_module`); a string as
    `toolkit export --model` takes it (toolkit.export.source.resolve)."""
    if isinstance(model, ModelSource):
        return model
    if _is_module(model):
        if weights is not None:
            raise ModelArgumentError("weights= is for a model given by name; load them into the module yourself "
                                     "(module.load_state_dict(...)) before exporting it")
        given = {**(preprocess or {}), **({"n_patches": int(n_patches)} if n_patches else {})}
        return from_module(model, preprocess=given, classes=classes, activation=activation or "sigmoid",
                           background=background, any_fog=any_fog)
    if not isinstance(model, str):
        raise ModelArgumentError(f"model must be a preset name, a checkpoint path, 'package.module:factory', a "
                                 f"ModelSource or a torch.nn.Module, not {type(model).__name__}")
    if preprocess:
        check_preprocess_keys(preprocess)
    return resolve(model, weights=weights, n_patches=n_patches, tsai=tsai, preprocess=preprocess, classes=classes,
                   activation=activation, factory_kwargs=factory_kwargs, background=background, any_fog=any_fog,
                   untrained=untrained)
