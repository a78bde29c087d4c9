"""The export room: a model in, a checked and verified deployment bundle out (`toolkit export`).

- `pipeline`: `export_bundle(source, target, out, ExportOptions)`, the steps as methods of `ExportPipeline`, each
  run through `steps` (shown, timed, its result returned); `options`: `ExportOptions`, every option once (the
  command's flags are made from it); `cpu_choice`: the onnxruntime target's precision step;
- `source`: what `--model` names, resolved into a torch module and the facts the bundle needs;
- `onnx`: the bundle's graphs (model + activation, static shapes, constants folded);
- `checks` (static checks per target), `qdq` (TensorRT's Q/DQ rules), `verify` (PyTorch vs ONNX Runtime),
  `macs` (MACs and graph statistics), `manifest` (manifest.json and the summary);
- `targets` and `optables/` (target profiles and TensorRT op tables, as data), `buildkit` (the on-device build
  kit), `trt_build` (an engine, where TensorRT and a GPU are).
Imports run one way: toolkit.commands -> toolkit.bench -> toolkit.export -> toolkit.timing (docs/design.md).
"""
from toolkit.export.onnx import ExportError
from toolkit.export.options import ExportOptions
from toolkit.export.pipeline import export_bundle
from toolkit.export.manifest import summary_table

__all__ = ["ExportError", "ExportOptions", "export_bundle", "summary_table"]
