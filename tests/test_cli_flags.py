"""The command line speaks one language: an option that several commands take has one name, one dest and one help
text in all of them; the older spellings still work, hidden; unknown config keys are refused with the nearest name."""
from __future__ import annotations

import argparse

import pytest

from toolkit.cli import _prepared, build_parser, main
from toolkit.commands._options import bundle_of
from toolkit.commands.bench import benched_spec

# Options defined once (toolkit/commands/_options.py, _events.py, _recordings.py): same help everywhere.
SHARED = {"--model", "--weights", "--quiet", "--json", "--json-out", "--plot", "--layout", "--hop-s", "--lookahead-s",
          "--smoothing-s", "--on", "--off", "--min-duration-s", "--refractory-s", "--synthetic", "--mapping", "--bundle"}
HIDDEN = {"--preset": "model", "--checkpoint": "weights", "--min-duration": "min_duration_s",
          "--smoothing": "smoothing_s", "--refractory": "refractory_s", "--engine": "runner"}
MODEL_COMMANDS = ("train", "calibrate", "evaluate", "export")


def subcommand_options() -> dict[str, dict[str, argparse.Action]]:
    """{command: {option string: its action}} for every subcommand of `toolkit`."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {opt: action for action in p._actions for opt in action.option_strings}
            for name, p in sub.choices.items()}


def test_every_command_is_walked():
    options = subcommand_options()
    assert {"export", "evaluate", "train", "calibrate", "bench", "score", "inspect"} <= set(options)


def test_an_option_means_one_thing_in_every_command():
    seen: dict[str, tuple[str, str, object]] = {}
    clashes = []
    for command, options in sorted(subcommand_options().items()):
        for opt, action in options.items():
            if opt in ("-h", "--help"):
                continue
            if opt in seen and seen[opt][1] != action.dest:
                clashes.append(f"{opt}: dest {seen[opt][1]} in {seen[opt][0]}, {action.dest} in {command}")
            if opt in SHARED and opt in seen and seen[opt][2] != action.help:
                clashes.append(f"{opt}: help differs between {seen[opt][0]} and {command}")
            seen.setdefault(opt, (command, action.dest, action.help))
    assert not clashes, "\n".join(clashes)


def test_shared_switches_are_switches_and_layout_is_a_file_layout():
    for command, options in subcommand_options().items():
        for opt in ("--json", "--quiet"):
            if opt in options:
                assert isinstance(options[opt], argparse._StoreTrueAction), f"{command} {opt} takes no value"
        if "--layout" in options:
            assert "file layout" in options["--layout"].help, command
    assert "--input-layout" in subcommand_options()["export"]


def test_model_selection_is_the_same_everywhere_and_old_spellings_are_hidden(capsys):
    options = subcommand_options()
    for command in MODEL_COMMANDS:
        for opt, dest in (("--model", "model"), ("--weights", "weights"), ("--preset", "model"),
                          ("--checkpoint", "weights")):
            assert options[command][opt].dest == dest, (command, opt)
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = capsys.readouterr().out
        assert "--model" in shown and "--weights" in shown and "--quiet" in shown
        assert "--preset" not in shown and "--checkpoint" not in shown
    for opt, dest in HIDDEN.items():
        for command, opts in options.items():
            if opt in opts:
                assert opts[opt].help == argparse.SUPPRESS and opts[opt].dest == dest, (command, opt)


def test_hidden_aliases_still_parse():
    parser = build_parser()

    def parse(*argv):
        return parser.parse_args(_prepared(list(argv)))
    old = parse("train", "--synthetic", "2", "--preset", "fog-gru", "--checkpoint", "w.pt", "--out", "o")
    new = parse("train", "--synthetic", "2", "--model", "fog-gru", "--weights", "w.pt", "--out", "o")
    assert (old.model, old.weights) == (new.model, new.weights) == ("fog-gru", "w.pt")
    ev = parse("evaluate", "--synthetic", "1", "--min-duration", "4", "--checkpoint", "w.pt")
    assert ev.min_duration_s == 4 and ev.weights == "w.pt"
    ex = parse("export", "--out", "b", "--layout", "BCT", "--calib-data", "r.csv")
    assert ex.input_layout == "BCT" and ex.layout is None       # the old tensor-layout spelling
    ex = parse("export", "--out", "b", "--layout=BTC")
    assert ex.input_layout == "BTC"
    ex = parse("export", "--out", "b", "--layout", "defog", "--input-layout", "BCT")
    assert (ex.layout, ex.input_layout) == ("defog", "BCT")
    b = parse("bench", "fog-small", "--json", "out.json")         # bench's old --json PATH
    assert b.json is False and b.json_out == "out.json"
    b = parse("bench", "fog-small", "--json")
    assert b.json is True and b.json_out is None
    b = parse("bench", "--json", "-", "fog-small")
    assert b.json is True and benched_spec(b) == "fog-small"


BUNDLE_COMMANDS = ("inspect", "bench", "evaluate", "score", "serve")


def test_the_bundle_is_named_the_same_way_in_every_command(capsys):
    """--bundle DIR wherever a bundle is read (also fog-daemon); the folder as first argument, as inspect, bench and
    serve (fog-daemon) took it, still works, hidden from the help."""
    from deploy.daemon_args import build_parser as daemon_parser, overrides_from_args

    options = subcommand_options()
    for command in BUNDLE_COMMANDS:
        assert options[command]["--bundle"].dest == "bundle", command
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = capsys.readouterr().out
        assert "--bundle DIR" in shown and "BUNDLE" not in shown.replace("--bundle", ""), command
    parser = build_parser()

    def parse(*argv):
        return parser.parse_args(_prepared(list(argv)))
    for command in ("inspect", "serve"):
        assert bundle_of(parse(command, "b1")) == bundle_of(parse(command, "--bundle", "b1")) == "b1"
    assert benched_spec(parse("bench", "--bundle", "b1")) == benched_spec(parse("bench", "b1")) == "b1"
    assert benched_spec(parse("bench", "--model", "fog-gru")) == "fog-gru"
    for old, new in ((["b1", "--stdin"], ["--bundle", "b1", "--stdin"]), (["b1"], ["--bundle", "b1"])):
        daemon = [overrides_from_args(daemon_parser().parse_args(argv))[0]["bundle"] for argv in (old, new)]
        assert daemon == ["b1", "b1"]
    with pytest.raises(Exception, match="two bundles given"):
        bundle_of(parse("inspect", "b1", "--bundle", "b2"))


@pytest.mark.parametrize("item, hint", [
    ("events.min_duration=0.5", "did you mean 'min_duration_s'"),
    ("events.smoothing=1", "did you mean 'smoothing_s'"),
    ("stream.hop=1", "did you mean 'hop_s'"),
    ("min_duration_s=1", "'min_duration_s' under [events]"),
])
def test_config_keys_are_the_manifest_names_and_typos_are_refused(item, hint):
    from deploy.config import build_config, parse_set
    from deploy.validate import ConfigError

    with pytest.raises(ConfigError, match=hint.replace("[", r"\[").replace("]", r"\]")):
        build_config(None, [{"bundle": "b"}, parse_set(item)])
    build_config(None, [{"bundle": "b"}, parse_set("events.min_duration_s=0.5")])  # the manifest's name works
