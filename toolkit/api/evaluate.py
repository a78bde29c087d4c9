"""`evaluate(model, recordings, ...) -> EvaluationResult`: the API behind `toolkit evaluate`.

The model is scored on the daemon's hop grid (deploy.offline.predict_recording), beside Moore's freeze-index
baseline, by the project's one scorer (deploy.scoring). A bundle is scored with the graph of `precision` (default:
what its target runs here) and the result says which graph that was. Each scorer's operating points (episode
sensitivity and false alarms per hour over its on-threshold, deploy.operating_points) come with it, and with
`at_fa_per_hour` the threshold that keeps to that rate on these recordings, which `toolkit export
--on-threshold-from` can write into a bundle (the result names the recordings, by file hash, that chose it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration import progress as bars
from calibration.checkpoint import checkpoint_info, load_model, trained_event_mode, trained_on
from calibration.data import fingerprint
from deploy import operating_points
from deploy.bundle import Bundle, sha256_file
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
    trained_on: dict | None = None   # what the model was trained on (in-sample marks), when its checkpoint says
    identity: dict = field(default_factory=dict)   # preset, weights_sha256, bundle digest: what a threshold belongs to
    classes: tuple | None = None   # the names of the event columns (None: deploy.scoring.column_names)


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
    operating_points: dict = field(default_factory=dict)  # results[i]["name"] -> deploy.operating_points.sweep
    at_fa_per_hour: dict | None = None          # {"target", "chosen": {name: point or None}} when asked for
    recordings_used: list = field(default_factory=list)   # name, file and sha256 of each recording scored
    model_identity: dict | None = None          # the model scored (Scorer.identity), None for the baseline only

    @property
    def model(self) -> dict | None:
        return self.results[0] if self.precision is not None else None

    @property
    def baseline(self) -> dict:
        return self.results[-1]

    def to_json(self) -> dict:
        """What `toolkit evaluate --json` prints (strict JSON)."""
        return json_safe({"recordings": self.recordings, "hours": self.hours, "events": self.settings.to_dict(),
                          "precision": self.precision, "runtime": self.runtime, "results": self.results,
                          "operating_points": self.operating_points, "at_fa_per_hour": self.at_fa_per_hour,
                          "recordings_used": self.recordings_used, "model": self.model_identity})


def recording_identity(rec, trained=None) -> dict:
    """Which recording this was: its name, its file and the file's sha256 (or, read from memory, the sha256 of
    its samples and labels: calibration.data.fingerprint), so a threshold chosen on it can say on what; and
    `in_sample` against what the model was trained on (`trained`, a manifest's model.trained_on): "recording"
    (the very recording, by content hash; by name where the checkpoint kept no hash), "subject" (another recording
    of a person it was trained on) or None."""
    out = {**fingerprint(rec), "subject_from": rec.meta.get("subject_from")}
    out["in_sample"] = in_sample(out, trained)
    return out


def in_sample(identity: dict, trained: dict | None) -> str | None:
    if not trained:
        return None
    known = trained.get("recordings") or []
    hashes = {r.get(k) for r in known for k in ("sha256", "data_sha256")} - {None}
    if identity.get("sha256") in hashes or identity.get("data_sha256") in hashes:
        return "recording"
    if not hashes and identity["name"].rsplit("/", 1)[-1] in {r.get("name") for r in known}:
        return "recording"
    return "subject" if identity.get("subject") in set(trained.get("subjects") or ()) else None


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
    engine = open_engine(bundle, backend=backend, precision=precision, exact=True)
    used = getattr(engine, "precision", None) or precision or bundle.precision
    model = bundle.manifest.get("model") or {}
    return Scorer(f"bundle {Path(bundle.folder).name} ({used}, {engine.backend})", bundle.input.spec, engine, used,
                  engine.backend, bundle.events, bundle.output.event_columns, bundle.output.any_fog,
                  identity={"preset": model.get("preset"), "weights_sha256": model.get("weights_sha256"),
                            "bundle": str(bundle.folder), "bundle_digest": bundle.manifest.get("digest")},
                  classes=tuple(bundle.output.event_classes), trained_on=bundle.model.trained_on)


def torch_scorer(model, weights=None, preprocess=None, activation: str = "sigmoid") -> Scorer:
    if _is_module(model):
        source = from_module(model, preprocess=preprocess, activation=activation)
        module, spec, name, events, classes = source.module, source.spec, source.name, {}, source.classes
        trained = None
        identity = {"preset": None, "weights_sha256": source.weights_sha256}
    else:
        module, preset, checkpoint = load_model(model, weights)  # the project's one weights loader
        spec = PreprocessSpec.from_dict(models.get_preset(preset).preprocess)
        classes = models.get_preset(preset).classes
        events = dict(models.get_preset(preset).events)  # what its bundle would carry, the event mode included
        mode = trained_event_mode(checkpoint_info(checkpoint))[0] if checkpoint else None
        if mode:
            events["mode"] = mode
        name = preset + (f" ({weights})" if weights else " (shipped weights)" if checkpoint else " (untrained)")
        trained = trained_on(checkpoint)
        identity = {"preset": preset, "weights_sha256": sha256_file(checkpoint) if checkpoint else None}
    act = {"sigmoid": torch.sigmoid, "softmax": lambda y: torch.softmax(y, dim=-1), "none": lambda y: y}[activation]

    def infer(x):
        with torch.no_grad():
            return act(module(torch.from_numpy(np.ascontiguousarray(x)))).numpy()
    return Scorer(name, spec, infer, "fp32", "pytorch", events, identity=identity, classes=tuple(classes),
                  trained_on=trained)


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
             at_fa_per_hour: float | None = None, thresholds=operating_points.GRID,
             progress: bool = False) -> EvaluationResult:
    """Score `model` and the freeze-index baseline on `recordings` (paths, folders or Recording objects).

    `model`: a bundle folder (or deploy.bundle.Bundle), a preset name or checkpoint file (+ `weights`), a
    torch.nn.Module (+ `preprocess`), or None for the baseline only. `precision`: which of a bundle's graphs to score
    (fp32 | fp16 | int8). `events`: manifest event keys overriding the bundle's (else the export defaults).
    `thresholds`: the on-thresholds of each scorer's operating-point sweep (None: no sweep); `at_fa_per_hour`: also
    choose, per scorer, the threshold that keeps to this many false alarms per hour on these recordings."""
    if at_fa_per_hour is not None and (not thresholds or not at_fa_per_hour >= 0):
        raise FogError(f"at_fa_per_hour={at_fa_per_hour!r}: give a rate >= 0 false alarms per hour, and thresholds "
                       "to choose from")
    recs = _as_recordings(recordings, layout, mapping)
    scorer = make_scorer(model, weights=weights, preprocess=preprocess, precision=precision, backend=backend)
    settings = EventSettings.resolve(scorer.events if scorer else None, events)
    results, probs, scored = [], {}, []
    if scorer:
        probs["model"] = [p[:, scorer.columns] for p in model_probabilities(scorer, recs, settings, progress)]
        results.append(score(recs, probs["model"], settings, scorer.name, any_fog_rule=scorer.any_fog,
                             classes=scorer.classes))
        scored.append(("model", settings, scorer.any_fog, scorer.classes))
    probs["freeze index"] = [freeze_index_probability(r, fi_window_s, fi_threshold) for r in recs]
    results.append(score(recs, probs["freeze index"], freeze_index_settings(settings),
                         f"freeze index ({fi_window_s:g} s, threshold {fi_threshold:g})"))
    scored.append(("freeze index", freeze_index_settings(settings), "max", None))
    result = EvaluationResult(results=results, settings=settings, recordings=len(recs),
                              hours=sum(r.duration_s for r in recs) / 3600,
                              precision=scorer.precision if scorer else None,
                              runtime=scorer.runtime if scorer else None, probs=probs,
                              rules={"model": scorer.any_fog} if scorer else {},
                              recordings_used=[recording_identity(r, scorer.trained_on if scorer else None)
                                               for r in recs],
                              model_identity=scorer.identity if scorer else None)
    if thresholds:
        _sweep(result, recs, scored, thresholds, fi_threshold, at_fa_per_hour)
    return result


def _sweep(result: EvaluationResult, recs, scored, thresholds, fi_threshold: float, at_fa_per_hour) -> None:
    """Each scorer's operating points (and the chosen one) into `result`, keyed by the scorer's table name."""
    for (key, knobs, rule, classes), figures in zip(scored, result.results):
        swept = operating_points.sweep(recs, result.probs[key], knobs, thresholds, classes, rule)
        if key == "freeze index":     # the index's own units beside each probability threshold
            for point in swept["points"]:
                point["freeze_index"] = operating_points.freeze_index_at(point["on"], fi_threshold)
        result.operating_points[figures["name"]] = swept
    if at_fa_per_hour is not None:
        result.at_fa_per_hour = {"target": float(at_fa_per_hour), "chosen": {
            name: operating_points.choose(swept["points"], at_fa_per_hour)
            for name, swept in result.operating_points.items()}}


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
