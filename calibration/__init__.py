"""Calibration windows from recordings, INT8 range calibrators, PTQ, and one loop for training and QAT fine-tuning.

- `calibration.data`: `CalibrationDataReader` protocol, `WindowReader(recordings, spec, limit, seed)`, sampling.
- `calibration.calibrators`: max / percentile / entropy / mse over a one-pass histogram (numpy only).
- `calibration.cache`: `CalibrationCache` (JSON: amax per quantizer, calibrator, data, model hash).
- `calibration.ptq`: `calibrate(qat_model, reader, method)`, `apply_cache`, `agreement` (float vs INT8).
- `calibration.train`: `fit` (float training and QAT fine-tuning), `masked_bce`, `split_by_subject`.
- `calibration.data` is also the project's one window maker (`cut_windows`; `synthetic_windows` for export).
- `calibration.checkpoint`: the project's one weights loader (`read_weights`, `fit_weights`, `load_model`) and
  `save_checkpoint`; the bundled default weights in `models/weights/`.
- `calibration.model_report`: a second command line, the default model's figures
  (`python -m calibration.model_report --help`), kept beside the training it reports on.

Submodules are imported on use: `calibrators` and `cache` need no torch, so importing this package stays light.
See docs/calibration.md.
"""
