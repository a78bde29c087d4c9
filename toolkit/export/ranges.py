"""Which INT8 ranges a bundle ships, and where they came from.

Three sources, recorded in the manifest (`export.calibration.source`) and said in the export summary:
- `qat`: the learnt ranges of a QAT result (`toolkit train --qat` writes them into its model.pt, beside the
  fine-tuned float weights; a bare QAT state_dict carries them as quantizer buffers), shipped as they are;
- `cache`: a calibration cache (`toolkit calibrate --out cal.json`, given as `export --calibration cal.json`);
- `export-calibrated`: calibrated during the export (`--calib-method` on `--calib-data`, else synthetic windows).
Given ranges must belong to the model being exported: the sha256 of its float weights (`calibration.cache.model_hash`)
must equal the one the ranges were made on, and the quantizers must be the same (the graph's structure); a mismatch is
refused with both hashes and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass

from calibration.cache import CalibrationCache, CalibrationCacheError
from deploy.lazy import lazy_import
from toolkit.export.onnx import ExportError

qat_convert = lazy_import("models.qat", "workstation", "the quantization-aware variant of a model")
ptq = lazy_import("calibration.ptq", "workstation", "INT8 calibration")


@dataclass
class GivenRanges:
    source: str                # "qat" | "cache"
    cache: CalibrationCache
    path: str


def given_ranges(model_source, calibration_path=None) -> GivenRanges | None:
    """The ranges the user gave: a QAT checkpoint's own, or `--calibration` (never both); None: calibrate here."""
    qat = model_source.qat_ranges
    if qat is not None and calibration_path:
        raise ExportError(f"{model_source.weights_path} is a QAT result and carries its own learnt ranges: drop "
                          f"--calibration {calibration_path} (or export the float checkpoint that cache was made for)")
    if qat is not None:
        return GivenRanges("qat", qat, str(model_source.weights_path))
    if calibration_path:
        return GivenRanges("cache", CalibrationCache.load(calibration_path), str(calibration_path))
    return None


def check_belongs(model, given: GivenRanges) -> None:
    """Refuse ranges made for other float weights (the hashes differ); `model` is the float model or its QAT variant
    (the hash leaves quantizer buffers out, so both give the same)."""
    if given.source == "qat":
        where, fix = (f"the QAT ranges in {given.path}", "export the QAT run's own model.pt unchanged, or run "
                      "`toolkit train --qat` again from these weights")
    else:
        made_with = given.cache.data.get("checkpoint")
        where, fix = (f"calibration cache {given.path}", "recalibrate for the model you export (`toolkit calibrate "
                      "--weights THAT_CHECKPOINT --out cal.json`), or export the checkpoint the cache was made with"
                      + (f" ({made_with})" if made_with else ""))
    given.cache.check_model(model, where=where, fix=fix)


def apply_given(qat_model, given: GivenRanges) -> dict:
    """Check that `given` belongs to `qat_model` (weights hash, quantizer names), load its ranges, turn quantization
    on; returns the manifest's `export.calibration`."""
    check_belongs(qat_model, given)
    try:
        ptq.apply_cache(qat_model, given.cache, check_model=False)
    except CalibrationCacheError as exc:
        raise ExportError(f"{given.path}: {exc}") from None
    qat_convert.set_quantization(qat_model, True)
    return describe(given.source, given.cache.calibrator, given.cache.data, given.cache.unused, path=given.path,
                    model_hash=given.cache.model_hash)


def describe(source: str, calibrator: dict, data: dict, unused: list, path: str | None = None,
             model_hash: str | None = None) -> dict:
    """The manifest's `export.calibration`: which ranges shipped, from which data and method."""
    info = {"source": source, "method": calibrator.get("method"), "calibrator": calibrator,
            "windows": data.get("windows"), "data": data, "data_description": data_words(data), "path": path,
            "model_hash": model_hash, "unused": list(unused)}
    if unused:
        info["unused_amax"] = ptq.UNUSED_AMAX
    return info


def data_words(data: dict) -> str:
    """'64 synthetic windows' / '512 windows of 5 recordings (S02R01, S02R02, S03R02, ...)'."""
    windows = data.get("windows")
    count = f"{windows} " if windows is not None else ""
    if "deploy.synth" in str(data.get("source", "")):
        return f"{count}synthetic windows (deploy.synth, seed {data.get('seed')})"
    names = list(data.get("recordings") or [])
    if names:
        shown = ", ".join(str(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        tuned = data.get("fine_tuned_on")
        extra = f"; fine-tuned on {tuned['recordings']} recordings, {tuned['hours']} h" if tuned else ""
        return f"{count}windows of {len(names)} recording(s) ({shown}){extra}"
    return f"{count}windows (data not recorded)"


def ranges_line(calibration: dict | None) -> str | None:
    """The export summary's one line on the INT8 ranges (None when the bundle has no INT8 graph)."""
    if not calibration:
        return None
    what = f"{calibration.get('method')} on {calibration.get('data_description') or data_words(calibration)}"
    if calibration.get("source") == "qat":
        return f"INT8 ranges: QAT checkpoint {calibration['path']} (learnt; initial ranges {what})"
    if calibration.get("source") == "cache":
        return f"INT8 ranges: calibration cache {calibration['path']} ({what})"
    return f"INT8 ranges: {what}, calibrated at export"


def calibrate_int8(qat, reader, method: str, progress: bool = False) -> dict:
    """The one calibration seam of the exporter: ranges into the QAT quantizers, then quantization on. The result
    lists the quantizers no window reached (`unused`, inert at this shape; placeholder range, see calibration.ptq).
    `progress`: a bar of the windows calibrated (under the export's step bar: minutes for the large preset)."""
    cache = ptq.calibrate(qat, reader, method=method, progress=progress)
    qat_convert.set_quantization(qat, True)
    return describe("export-calibrated", cache.calibrator, cache.data, cache.unused)


def assert_inert(qat, shape, unused) -> None:
    """Refuse an INT8 graph in which a quantizer that calibration never reached would quantize with its placeholder."""
    live = sorted(set(unused) & ptq.active_quantizers(qat, shape)) if unused else []
    if live:
        raise ExportError(f"calibration never reached quantizer(s) {', '.join(live[:3])} but the export at input "
                          f"{tuple(shape)} uses them: calibrate at the export's batch and window (--batch, "
                          "--n-patches), or with --calib-data recordings long enough to reach them")
