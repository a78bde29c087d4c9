"""`export(model, target, out, ...) -> ExportResult`: the API behind `toolkit export`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from calibration.data import WindowReader
from deploy.recording import read_recordings
from toolkit.api.model import as_source
from toolkit.export import ExportOptions, export_bundle, summary_table
from toolkit.export.onnx import ExportError
from toolkit.export.ranges import given_ranges
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


def export(model, target: str = "jetson", out=None, *, weights=None, preprocess: dict | None = None, classes=None,
           activation: str | None = None, n_patches: int | None = None, tsai: bool = False,
           factory_kwargs: dict | None = None, background=None, any_fog: str | None = None,
           calibration=None, calib_data=None, calib_layout: str | None = None, calib_mapping: str | None = None,
           fidelity_data=None, fidelity_layout: str | None = None, fidelity_mapping: str | None = None,
           events: dict | None = None, quiet: bool = True, untrained: bool = False, **options) -> ExportResult:
    """Export `model` for `target` into the bundle folder `out`.

    `model`: a preset name, a checkpoint of this project, 'package.module:factory', or a torch.nn.Module (with
    `preprocess`: rate_hz, units, patch, n_patches, normalization, layout; what is missing comes from the module or
    the defaults, see toolkit.api.model). `calib_data` / `fidelity_data`: recordings (paths or Recording objects) to
    calibrate INT8 / measure streaming fidelity on (default synthetic). `calibration`: a calibration cache
    (`toolkit calibrate --out`) whose ranges ship as they are; a QAT result (`toolkit train --qat`) ships its own. `events`: manifest event keys
    (deploy.contract.EVENT_KEYS). Other keywords are `toolkit.export.ExportOptions` fields (batch, precision, opset,
    calib_method, calib_windows, verify_windows, dla_core, build_engine, force, stream_normalization, fidelity,
    recurrence, threads). `untrained`: a preset with random initial weights on purpose (without it, an `n_patches`
    its shipped weights cannot load, or input-spec values that differ from trained weights', are refused).
    """
    if out is None:
        raise TypeError("export() needs out=: the bundle folder to create")
    known = set(ExportOptions.__dataclass_fields__) - {"calib_reader", "fidelity_recordings", "events", "quiet",
                                                       "ranges"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"export() got unknown option(s) {unknown}; known: {sorted(known)}")
    tgt = get_target(target)
    source = as_source(model, weights=weights, preprocess=preprocess, classes=classes, activation=activation,
                       n_patches=n_patches, tsai=tsai, factory_kwargs=factory_kwargs, background=background,
                       any_fog=any_fog, untrained=untrained)
    opt = ExportOptions(events=dict(events or {}), quiet=quiet, ranges=given_ranges(source, calibration), **options)
    if opt.ranges and calib_data:
        raise ExportError(f"calib_data calibrates at export, but the {opt.ranges.source} ranges of {opt.ranges.path} "
                          "ship as they are: drop --calib-data (or --calibration)")
    if calib_data:
        opt.calib_reader = WindowReader(_recordings(calib_data, calib_layout, calib_mapping), source.preprocess,
                                        limit=opt.calib_windows or 64, batch_size=16)
    if fidelity_data:
        opt.fidelity_recordings = _recordings(fidelity_data, fidelity_layout, fidelity_mapping)
    manifest = export_bundle(source, tgt, out, opt)
    return ExportResult(out=Path(out), manifest=manifest)


def _recordings(data, layout, mapping) -> list:
    items = [data] if isinstance(data, (str, Path)) else list(data)
    paths = [x for x in items if isinstance(x, (str, Path))]
    loaded = read_recordings(paths, layout=layout, mapping=mapping) if paths else []
    return loaded + [x for x in items if not isinstance(x, (str, Path))]
