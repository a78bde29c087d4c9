"""Calibration windows from recordings, INT8 range calibrators, PTQ and QAT fine-tuning."""
