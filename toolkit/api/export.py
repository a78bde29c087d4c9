"""`export(model, target, out, **options) -> ExportResult`: the API behind `toolkit export`."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from deploy.contract.manifest import Manifest
from toolkit.api.model import as_source
from toolkit.api.threshold import ChosenEvents, chosen_events
from toolkit.export import ExportOptions, export_bundle, summary_table
from toolkit.export.onnx import ExportError
from toolkit.export.targets import get_target


@dataclass
class ExportResult:
    out: Path              # the bundle folder
    manifest: dict         # its manifest.json

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def sections(self) -> Manifest:
        """The manifest as typed sections (deploy.contract.manifest.Manifest)."""
        return Manifest.from_dict(self.manifest)

    @property
    def notes(self) -> list[str]:
        return list(self.sections.model.notes)

    def summary(self) -> str:
        """The table `toolkit export` prints."""
        return summary_table(self.out, self.manifest)


def export(model, target: str = "jetson", out=None, *, weights=None, options: ExportOptions | None = None,
           **fields) -> ExportResult:
    """Export `model` for `target` into the bundle folder `out`.

    `model`: a preset name, a checkpoint of this project, 'package.module:factory', or a torch.nn.Module (with
    `preprocess`: rate_hz, units, patch, n_patches, normalization, layout; what is missing comes from the module or
    the defaults, see toolkit.api.model); `weights`: a weights file for a model given by name. Every other keyword
    is a field of `toolkit.export.ExportOptions`, the options `toolkit export` has as flags, spelled as fields
    (preprocess, classes, batch, precision, recurrence, calibration, calib_data, fidelity_data, events, ...;
    `calib_data` / `fidelity_data` may also be Recording objects); `options` is an ExportOptions to start from. The
    API is quiet (no bars) unless given quiet=False.
    """
    if out is None:
        raise TypeError("export() needs out=: the bundle folder to create")
    if options is None:
        fields.setdefault("quiet", True)
    opt = ExportOptions.build(options, **fields)
    tgt = get_target(target)
    source = as_source(model, weights=weights, preprocess=opt.preprocess, classes=opt.classes,
                       activation=opt.activation, n_patches=opt.n_patches, tsai=opt.tsai,
                       factory_kwargs=opt.factory_kwargs, background=opt.background, any_fog=opt.any_fog,
                       untrained=opt.untrained)
    chosen = _chosen_events(opt.on_threshold_from, opt.events, source)
    return ExportResult(out=Path(out), manifest=export_bundle(source, tgt, out, opt, chosen))


def _chosen_events(path, events: dict, source) -> ChosenEvents | None:
    """The operating point `on_threshold_from` names (its record saying whether the weights were checked), None
    without it; refused beside event settings and for other weights than those evaluated."""
    if path is None:
        return None
    given = sorted(k for k, v in events.items() if v is not None)
    if given:
        raise ExportError(f"--on-threshold-from {path} brings the event settings its threshold was chosen with; "
                          f"{', '.join('--' + k.replace('_', '-') for k in given)} would change what it was chosen "
                          "for: evaluate with those settings and choose again, or drop them")
    chosen = chosen_events(path)
    if chosen.weights_sha256 and source.weights_sha256 and chosen.weights_sha256 != source.weights_sha256:
        raise ExportError(f"{path} chose its threshold for weights sha256 {chosen.weights_sha256[:12]}..., but this "
                          f"export is of {source.weights_sha256[:12]}...: a threshold belongs to the probabilities of "
                          "one model; evaluate these weights (their bundle) and choose again")
    # an untrained or unnamed model has no weights hash on one side: the choice ships, saying it was not checked
    checked = bool(chosen.weights_sha256 and source.weights_sha256)
    return replace(chosen, record={**chosen.record, "weights_checked": checked})
