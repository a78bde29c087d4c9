"""Small Stanford IMU FOG files written by tests: a workbook (.xlsx, the study's 69 columns) and a 64 Hz trial (.npz),
filled from a seeded synthetic recording so models and the freeze index have gait and freezes to look at."""
from __future__ import annotations

import numpy as np

from deploy.recording import STANDARD_GRAVITY
from deploy.stanford import IMUS
from deploy.synth import synth_recording

SIGNALS = ("ax", "ay", "az", "gx", "gy", "gz")
HEADER = ["subject_ID", "time"] + [f"imu_{p}_{s}" for p in IMUS for s in SIGNALS] + ["freeze_label"]


def synthetic_signal(seconds: float, rate_hz: float, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(acc (n, 3) m/s^2 with gravity along -AccV, fog (n,) 0/1) from deploy.synth."""
    rec = synth_recording(minutes=seconds / 60.0, seed=seed, rate_hz=rate_hz, units="g")
    return rec.acc * STANDARD_GRAVITY, (rec.labels.max(axis=1) > 0.5).astype(np.int8)


def workbook_rows(seconds: float = 4.0, imus=("chest", "lumbar", "ankle_l", "ankle_r", "foot_l", "foot_r"),
                  seed: int = 3, t0: float = 275.742188, rate_hz: float = 128.0) -> list[list]:
    """Rows (header first) as the study writes them: every IMU a rotated copy of one synthetic signal, the IMUs not
    in `imus` empty (None), time on a clinic clock starting at `t0`, rounded to 6 decimals."""
    acc, fog = synthetic_signal(seconds, rate_hz, seed)
    n = len(acc)
    gyro = np.stack([np.sin(np.arange(n) / 20.0 + k) for k in range(3)], axis=1)
    time = np.round(t0 + np.arange(n) / rate_hz, 6)
    rows = [list(HEADER)]
    for i in range(n):
        row = [6, float(time[i])]
        for k, place in enumerate(IMUS):
            if place in imus:
                row += [float(v) for v in np.roll(acc[i], k % 3 if place != "lumbar" else 0)] + gyro[i].tolist()
            else:
                row += [None] * 6
        rows.append(row + [int(fog[i])])
    return rows


def write_workbook(path, rows=None, **kw):
    """Write `rows` (default workbook_rows(**kw)) as a one-sheet .xlsx with openpyxl."""
    import openpyxl
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Sheet1")
    for row in rows if rows is not None else workbook_rows(**kw):
        sheet.append(row)
    book.save(path)
    return path


def write_trial(path, seconds: float = 20.0, seed: int = 3, **changes):
    """A 64 Hz trial archive as the shared folder holds them (acc, gyro, fog, rate_hz)."""
    acc, fog = synthetic_signal(seconds, 64.0, seed)
    arrays = {"acc": acc.astype(np.float32), "gyro": np.zeros_like(acc, dtype=np.float32), "fog": fog,
              "rate_hz": np.float32(64.0)}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path
