"""Recordings: CSV/npz round trips, layout detection, mappings, and the clear errors bad files must give."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.errors import DataError
from deploy.recording import AXES, CLASSES, Recording, read_recording, write_recording


def _rec(n=500, rate=100.0, units="g", seed=0, masked=False):
    rng = np.random.default_rng(seed)
    acc = rng.normal(size=(n, 3)) * 0.2 + [-1.0, 0.0, 0.1]
    labels = (rng.random((n, 3)) < 0.2).astype(float)
    mask = rng.random(n) < 0.8 if masked else None
    return Recording(acc, rate, units, time=np.arange(n), labels=labels, mask=mask)


def test_constants_order():
    assert AXES == ("AccV", "AccML", "AccAP")
    assert CLASSES == ("StartHesitation", "Turn", "Walking")


@pytest.mark.parametrize("layout,rate,units", [("tdcsfog", 128.0, "m/s^2"), ("defog", 100.0, "g")])
def test_csv_round_trip_is_lossless(tmp_path, layout, rate, units):
    rec = _rec(rate=rate, units=units, masked=layout == "defog")
    path = write_recording(rec, tmp_path / "a.csv", layout)
    back = read_recording(path)  # layout detected from the header
    assert back.meta["layout"] == layout and back.rate_hz == rate and back.units == units
    assert np.array_equal(back.acc, rec.acc) and np.array_equal(back.labels, rec.labels)
    assert np.array_equal(back.time, rec.time)
    if layout == "defog":
        assert np.array_equal(back.mask, rec.mask)
    again = write_recording(back, tmp_path / "b.csv", layout)
    assert again.read_text() == path.read_text()


def test_npz_round_trip(tmp_path):
    rec = _rec(masked=True)
    rec.meta["subject"] = "s01"
    back = read_recording(write_recording(rec, tmp_path / "a.npz", "npz"))
    assert np.array_equal(back.acc, rec.acc) and np.array_equal(back.mask, rec.mask)
    assert back.meta["subject"] == "s01" and back.rate_hz == rec.rate_hz


def test_test_layout_infers_rate_and_units(tmp_path):
    (tmp_path / "t.csv").write_text("Time,AccV,AccML,AccAP\n0,-9.5,0.3,1.0\n1,-9.6,0.2,1.1\n")
    rec = read_recording(tmp_path / "t.csv")
    assert (rec.rate_hz, rec.units, rec.labels) == (128.0, "m/s^2", None)
    (tmp_path / "d.csv").write_text("Time,AccV,AccML,AccAP\n0,-1.0,0.03,0.1\n1,-0.98,0.02,0.1\n")
    assert read_recording(tmp_path / "d.csv").rate_hz == 100.0


def test_units_conversion_is_explicit(tmp_path):
    rec = _rec(units="g")
    with pytest.raises(DataError, match="to_units"):
        write_recording(rec, tmp_path / "x.csv", "tdcsfog")
    rec128 = Recording(rec.acc, 128.0, "g", labels=rec.labels)
    ms = rec128.to_units("m/s^2")
    assert np.allclose(ms.acc, rec.acc * 9.80665)
    back = read_recording(write_recording(ms, tmp_path / "x.csv", "tdcsfog")).to_units("g")
    assert np.allclose(back.acc, rec.acc, rtol=1e-14)


def test_custom_mapping_negates_and_renames(tmp_path):
    (tmp_path / "m.csv").write_text("t_ms,ax,ay,az\n0,0.1,0.2,1.0\n20,0.1,0.3,0.9\n")
    rec = read_recording(tmp_path / "m.csv", mapping={"time": "t_ms", "time_unit": "ms", "rate_hz": 50,
                                                      "units": "g", "axes": {"AccV": "-az", "AccML": "ax",
                                                                             "AccAP": "ay"}})
    assert rec.rate_hz == 50 and np.allclose(rec.acc[0], [-1.0, 0.1, 0.2])


def test_mobgap_real_file(mobgap_dir):
    path = next(mobgap_dir.glob("HA/001/*Test5*.csv"))
    rec = read_recording(path)  # detected from its header
    assert rec.meta["layout"] == "mobgap" and rec.rate_hz == 100 and rec.units == "g"
    assert -1.1 < np.median(rec.acc[:, 0]) < -0.9  # gravity on AccV, Kaggle sign convention


def _bad(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        read_recording(path)
    return str(info.value)


HEAD = "Time,AccV,AccML,AccAP,StartHesitation,Turn,Walking\n"


def test_missing_column_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Time,AccV,AccML,StartHesitation,Turn,Walking\n0,1,2,0,0,0\n")
    with pytest.raises(DataError) as info:
        read_recording(path, layout="tdcsfog")
    assert "AccAP" in str(info.value) and "bad.csv" in str(info.value)


def test_non_numeric_cell_names_row_and_column(tmp_path):
    msg = _bad(tmp_path, HEAD + "0,1,2,3,0,0,0\n1,1,abc,3,0,0,0\n")
    assert "row 3" in msg and "'AccML'" in msg and "abc" in msg


def test_nan_and_inf_are_refused(tmp_path):
    assert "row 2" in _bad(tmp_path, HEAD + "0,nan,2,3,0,0,0\n1,1,2,3,0,0,0\n")
    assert "'AccAP'" in _bad(tmp_path, HEAD + "0,1,2,3,0,0,0\n1,1,2,inf,0,0,0\n")


def test_duplicate_and_decreasing_time(tmp_path):
    assert "duplicate" in _bad(tmp_path, HEAD + "0,1,2,3,0,0,0\n0,1,2,3,0,0,0\n")
    msg = _bad(tmp_path, HEAD + "0,1,2,3,0,0,0\n2,1,2,3,0,0,0\n1,1,2,3,0,0,0\n")
    assert "decreasing" in msg and "row 4" in msg


def test_unknown_layout_and_ragged_rows(tmp_path):
    assert "unknown layout" in _bad(tmp_path, "a,b,c\n1,2,3\n")
    assert "row 3" in _bad(tmp_path, HEAD + "0,1,2,3,0,0,0\n1,1,2\n")
    with pytest.raises(DataError, match="unknown layout"):
        read_recording(tmp_path / "bad.csv", layout="parquet")


def test_spreadsheet_quirks_and_empty_files(tmp_path):
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfTime,AccV,AccML,AccAP\r\n0,-1.0,0.1,0.2\r\n1,-1.0,0.1,0.3\r\n")
    assert read_recording(tmp_path / "bom.csv").acc[1, 2] == 0.3
    assert "empty" in _bad(tmp_path, "")
    assert "no data rows" in _bad(tmp_path, HEAD)
