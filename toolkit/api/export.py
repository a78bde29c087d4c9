"""`export(model, target, out, **options) -> ExportResult`: the API behind `toolkit export`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.api.model import as_source
from toolkit.export import ExportOptions, export_bundle, summary_table
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
    def notes(self) -> list[str]:
        return list(self.manifest["model"].get("notes") or [])

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
    return ExportResult(out=Path(out), manifest=export_bundle(source, tgt, out, opt))
