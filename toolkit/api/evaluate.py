"""`evaluate(model, recordings, ...) -> EvaluationResult`: the API behind `toolkit evaluate`.

The model is scored on the daemon's hop grid (deploy.offline.predict_recording), beside Moore's freeze-index
baseline, by the project's one scorer (deploy.scoring). A bundle is scored with the graph of `precision` (default:
what its target runs here) and the result says which graph that was.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration import progress as bars
from calibration.checkpoint import load_model
from deploy.bundle import Bundle
from deploy.contract.events import EventSettings
from deploy.engines import open_engine
from deploy.errors import FogError
from deploy.lazy import lazy_import
from deploy.offline import predict_recording
from deploy.preprocess import PreprocessSpec
from deploy.recording import Recording, read_recordings
from deploy.scoring import (FI_THRESHOLD, FI_WINDOW_S, at_recording_rate, freeze_index_probability,
                            freeze_index_settings, json_safe, score)
from toolkit.api.model import _is_module, from_module

torch = lazy_import("torch", "workstation", "evaluating a PyTorch model")
models = lazy_import("models", "workstation", "evaluating a PyTorch model")


@dataclass
class Scorer:
    name: str              # how the tables name it
    spec: PreprocessSpec
    infer: object          # batch -> probabilities
    precision: str         # the graph scored: fp32 | fp16 | int8 (a PyTorch model: fp32)
    runtime: str           # pytorch | onnxruntime | tensorrt
    events: EventSettings | dict = field(default_factory=dict)   # a bundle's (or a preset's) event settings
    columns: object = field(default_factory=lambda: slice(None))  # event columns (a bundle's background classes left out)
    any_fog: str = "max"


@dataclass
class EvaluationResult:
    results: list[dict]           # deploy.scoring.score per scorer: the model's first (if any), the freeze index last
    settings: EventSettings       # event settings used
    recordings: int
    hours: float
    precision: str | None = None  # the graph the model was scored with (None: baseline only)
    runtime: str | None = None
    probs: dict = field(default_factory=dict)   # scorer -> per-recording probabilities at the recording's rate
    rules: dict = field(default_factory=dict)   # scorer -> its any-FOG rule ("max" or "sum"; "max" when absent)

    @property
    def model(self) -> dict | None:
        return self.results[0] if self.precision is not None else None

    @property
    def baseline(self) -> dict:
        return self.results[-1]

    def to_json(self) -> dict:
        """What `toolkit evaluate --json` prints (strict JSON)."""
        return json_safe({"recordings": self.recordings, "hours": self.hours, "events": self.settings.to_dict(),
                          "precision": self.precision, "runtime": self.runtime, "results": self.results})


def _as_recordings(recordings, layout=None, mapping=None) -> list:
    items = [recordings] if isinstance(recordings, (str, Path, Recording)) else list(recordings)
    out = []
    for item in items:
        out += read_recordings([item], layout=layout, mapping=mapping) if isinstance(item, (str, Path)) else [item]
    if not out:
        raise FogError("no recordings to evaluate on: pass files, folders or Recording objects")
    return out


def bundle_scorer(bundle, precision=None, backend: str = "auto") -> Scorer:
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    engine = open_engine(bundle, backend=backend, precision=precision)
    used = getattr(engine, "precision", None) or precision or bundle.precision
    return Scorer(f"bundle {Path(bundle.folder).name} ({used}, {engine.backend})", bundle.input.spec, engine, used,
                  engine.backend, bundle.events, bundle.output.event_columns, bundle.output.any_fog)


def torch_scorer(model, weights=None, preprocess=None, activation: str = "sigmoid") -> Scorer:
    if _is_module(model):
        source = from_module(model, preprocess=preprocess, activation=activation)
        module, spec, name, events = source.module, source.spec, source.name, {}
    else:
        module, preset, checkpoint = load_model(model, weights)  # the project's one weights loader
        spec = PreprocessSpec.from_dict(models.get_preset(preset).preprocess)
        events = dict(models.get_preset(preset).events)  # what its bundle would carry
        name = preset + (f" ({weights})" if weights else " (shipped weights)" if checkpoint else " (untrained)")
    act = {"sigmoid": torch.sigmoid, "softmax": lambda y: torch.softmax(y, dim=-1), "none": lambda y: y}[activation]

    def infer(x):
        with torch.no_grad():
            return act(module(torch.from_numpy(np.ascontiguousarray(x)))).numpy()
    return Scorer(name, spec, infer, "fp32", "pytorch", events)


def _is_bundle(model) -> bool:
    return isinstance(model, Bundle) or (isinstance(model, (str, Path)) and (Path(model) / "manifest.json").is_file())


def make_scorer(model, *, weights=None, preprocess=None, precision=None, backend="auto",
                activation="sigmoid") -> Scorer | None:
    if model is None:
        if weights is None:
            return None
        model = None  # load_model takes the preset from the checkpoint
    if _is_bundle(model):
        return bundle_scorer(model, precision, backend)
    if precision not in (None, "fp32"):
        raise FogError(f"precision {precision!r} chooses one of a bundle's graphs; a PyTorch model runs fp32 "
                       "(export it first: toolkit export / toolkit.api.export)")
    return torch_scorer(model, weights, preprocess, activation)


def evaluate(model=None, recordings=(), *, weights=None, preprocess: dict | None = None, precision: str | None = None,
             backend: str = "auto", events: dict | None = None, fi_window_s: float = FI_WINDOW_S,
             fi_threshold: float = FI_THRESHOLD, layout: str | None = None, mapping: str | None = None,
             progress: bool = False) -> EvaluationResult:
    """Score `model` and the freeze-index baseline on `recordings` (paths, folders or Recording objects).

    `model`: a bundle folder (or deploy.bundle.Bundle), a preset name or checkpoint file (+ `weights`), a
    torch.nn.Module (+ `preprocess`), or None for the baseline only. `precision`: which of a bundle's graphs to score
    (fp32 | fp16 | int8). `events`: manifest event keys overriding the bundle's (else the export defaults)."""
    recs = _as_recordings(recordings, layout, mapping)
    scorer = make_scorer(model, weights=weights, preprocess=preprocess, precision=precision, backend=backend)
    settings = EventSettings.resolve(scorer.events if scorer else None, events)
    results, probs = [], {}
    if scorer:
        probs["model"] = [p[:, scorer.columns] for p in model_probabilities(scorer, recs, settings, progress)]
        results.append(score(recs, probs["model"], settings, scorer.name, any_fog_rule=scorer.any_fog))
    probs["freeze index"] = [freeze_index_probability(r, fi_window_s, fi_threshold) for r in recs]
    results.append(score(recs, probs["freeze index"], freeze_index_settings(settings),
                         f"freeze index ({fi_window_s:g} s, threshold {fi_threshold:g})"))
    return EvaluationResult(results=results, settings=settings, recordings=len(recs),
                            hours=sum(r.duration_s for r in recs) / 3600,
                            precision=scorer.precision if scorer else None, runtime=scorer.runtime if scorer else None,
                            probs=probs, rules={"model": scorer.any_fog} if scorer else {})


def model_probabilities(scorer: Scorer, recs, settings: EventSettings, progress: bool = False) -> list[np.ndarray]:
    """Each recording through the scorer on the daemon's hop grid, back at the recording's rate."""
    spec = scorer.spec
    hop, look = settings.hop_samples(spec.rate_hz), settings.lookahead_samples(spec.rate_hz)
    out = []
    with bars.bar(len(recs), "evaluate", unit="recording", enabled=progress) as bar:
        for rec in recs:
            p = predict_recording(rec, spec, scorer.infer, hop, look)
            out.append(at_recording_rate(p, spec.rate_hz, rec))
            bar.update(1)
    return out
