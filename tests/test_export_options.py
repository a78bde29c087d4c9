"""One options object: `toolkit export`'s flags are made from toolkit.export.ExportOptions, the Python API takes its
fields, and the pipeline reads it; nothing is listed twice."""
from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

pytest.importorskip("torch")

from toolkit import api  # noqa: E402
from toolkit.cli import _prepared, build_parser  # noqa: E402
from toolkit.export import ExportOptions  # noqa: E402
from toolkit.export import options as export_options  # noqa: E402

# What the command has besides the options: what is exported (--model/--weights and their hidden old spellings),
# for which target and where, and the signing that follows the export (toolkit sign's flags).
NOT_OPTIONS = {"-h", "--help", "--model", "--preset", "--weights", "--checkpoint", "--target", "--out", "--sign-key",
               "--passphrase-env", "--signer"}


def _export_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["export"]


def _parse(*argv) -> argparse.Namespace:
    return build_parser().parse_args(_prepared(["export", "--out", "b", *argv]))


def test_every_flag_of_export_is_an_option_and_every_option_a_flag():
    actions = {opt: action for action in _export_parser()._actions for opt in action.option_strings}
    made = export_options.flags()
    assert set(actions) - NOT_OPTIONS == set(made)
    named = set(made.values())
    assert named == {f.name for f in fields(ExportOptions)}
    for f in fields(ExportOptions):   # a simple field's flag carries the field's own help
        if not f.metadata["parts"]:
            assert actions[export_options._flag(f)].help == f.metadata["help"], f.name


def test_no_flags_give_the_default_options():
    assert export_options.from_args(_parse()) == ExportOptions()


def test_flags_and_api_fields_give_the_same_options():
    args = _parse("--classes", "A,B,NoEvent", "--background-class", "NoEvent", "--factory-kwargs", '{"hidden": 8}',
                  "--rate-hz", "50", "--layout", "BTC", "--normalization", "recording", "--n-patches", "64",
                  "--precision", "int8", "--no-engine", "--no-fidelity", "--calib-data", "a.csv", "b.csv",
                  "--layout", "defog", "--hop-s", "0.25", "--min-duration", "2", "--threads", "2", "--quiet")
    assert export_options.from_args(args) == ExportOptions(
        classes=["A", "B", "NoEvent"], background=["NoEvent"], factory_kwargs={"hidden": 8},
        preprocess={"rate_hz": 50.0, "layout": "BTC", "normalization": "recording"}, n_patches=64, precision="int8",
        build_engine="never", fidelity=False, calib_data=["a.csv", "b.csv"], layout="defog",
        events={"hop_s": 0.25, "min_duration_s": 2.0}, threads=2, quiet=True)


def test_the_api_takes_the_fields_and_names_a_typo(tmp_path):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['calib_windowz'\] \(did you mean 'calib_windows'"):
        api.export("fog-small", "cpu", tmp_path / "x", calib_windowz=3)
    with pytest.raises(Exception, match="--batch must be a whole number >= 1"):
        api.export("fog-small", "cpu", tmp_path / "x", batch=0)
    with pytest.raises(Exception, match="events.hop_s = -1"):
        ExportOptions(events={"hop_s": -1})
    assert not any(tmp_path.iterdir())
