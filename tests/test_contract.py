"""deploy.contract: the manifest's typed sections round-trip an exported manifest exactly, a Bundle exposes them, event
settings are layered and checked one way, and seconds become samples by one rule, nowhere else."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from deploy.bundle import Bundle
from deploy.contract.events import FULL, EventSettings
from deploy.contract.manifest import SECTIONS, Manifest
from deploy.contract.model import InputSection, OutputSection
from deploy.contract.runtime import OnnxRuntimeSection, ThreadCap
from deploy.errors import BundleError, ConfigError
from tests.helpers_bundle import make_bundle

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["StartHesitation", "Turn", "Walking"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A real export (INT8 plan, kit, streaming fidelity): every typed section filled by the exporter."""
    pytest.importorskip("torch")
    from toolkit.cli import main as cli
    out = tmp_path_factory.mktemp("contract") / "b"
    assert cli(["export", "--model", "tests.fixtures.user_models:tiny_convnet", "--rate-hz", "64", "--patch", "4",
                "--input-layout", "BCT", "--n-patches", "32", "--target", "jetson", "--calib-windows", "4",
                "--verify-windows", "4", "--hop-s", "0.25", "--out", str(out), "--quiet",
                "--allow-degenerate"]) == 0     # the seeded stand-in is an always-on detector
    return out


def test_the_typed_manifest_writes_back_exactly_what_export_wrote(exported):
    text = (exported / "manifest.json").read_text()
    manifest = json.loads(text)
    typed = Manifest.from_dict(manifest)
    assert typed.to_dict() == manifest
    assert json.dumps(typed.to_dict(), indent=2) + "\n" == text      # key order too: a byte-identical manifest
    assert set(SECTIONS) <= set(manifest)                           # every typed section is in a real manifest
    for name, cls in SECTIONS.items():
        section = typed.section(name)
        assert isinstance(section, cls) and section.to_dict() == manifest[name], name


def test_a_bundle_exposes_its_sections(exported):
    bundle = Bundle.load(exported)
    assert bundle.events.hop_s == 0.25 and bundle.events.on == {c: 0.5 for c in CLASSES}
    assert bundle.input.spec.patch == 4 and bundle.input.shape == (1, 12, 32) and bundle.spec is bundle.input.spec
    assert bundle.output.event_columns == [0, 1, 2] and bundle.output.any_fog == "max"
    assert bundle.precision_plan.recurrence in ("unrolled", "fused") and bundle.models.int8 == "model_int8_qdq.onnx"
    assert bundle.streaming.normalization == "declared" and bundle.streaming.fidelity["passed"]
    assert bundle.onnxruntime == OnnxRuntimeSection() and bundle.model.source == "user"


def test_event_settings_layer_one_way():
    manifest = {"hop_s": 0.25, "on": {c: 0.7 for c in CLASSES}, "off": {c: 0.4 for c in CLASSES}}
    settings = EventSettings.resolve(manifest, {"hop_s": None, "lookahead_s": 2.0}, {"smoothing_s": 0.1},
                                     classes=CLASSES)
    assert (settings.hop_s, settings.lookahead_s, settings.smoothing_s) == (0.25, 2.0, 0.1)   # None: not given
    assert settings.min_duration_s == EventSettings().min_duration_s and settings.on["Turn"] == 0.7
    assert EventSettings.resolve(settings, {"on": 0.8}).on == 0.8          # a typed layer is a layer too
    with pytest.raises(ConfigError, match="each off threshold must be <= its on threshold"):
        EventSettings.resolve(manifest, {"on": 0.3}, classes=CLASSES)       # off of one layer, on of another
    with pytest.raises(ConfigError, match="did you mean 'Turn'"):
        EventSettings.resolve({"on": {"Trun": 0.5, "StartHesitation": 0.5, "Walking": 0.5}}, classes=CLASSES)
    with pytest.raises(ConfigError, match="did you mean 'min_duration_s'"):
        EventSettings.resolve({"min_duration": 2})
    with pytest.raises(ConfigError, match="hop_s = 0: must be > 0"):
        EventSettings.resolve({"hop_s": 0})
    with pytest.raises(ConfigError, match="lookahead_s = 'soon': expected a number"):
        EventSettings.resolve({"lookahead_s": "soon"})


def test_seconds_become_samples_by_one_rule():
    assert EventSettings(hop_s=0.5).hop_samples(64) == 32 and EventSettings(hop_s=0.5).hop_samples(25) == 12
    assert EventSettings(hop_s=0.001).hop_samples(64) == 1                  # never a hop of 0 samples
    assert EventSettings(lookahead_s=1.0).lookahead_samples(128) == 128
    assert EventSettings(lookahead_s=0).lookahead_samples(64) == 0
    assert EventSettings(lookahead_s=FULL).lookahead_samples(64) is None    # whole windows
    assert EventSettings.from_dict({"lookahead_s": None}).lookahead_s == FULL   # the daemon's reading of null


# A seconds value of the hop or look-ahead times a rate (either order), or a hop written in seconds (int(0.5 * rate)).
PRODUCT = re.compile(r"""(hop|look)\w*["'\]]*\)?\s*\*\s*[\w.\[\]"']*rate"""
                     r"""|rate[\w.\[\]"']*\)?\s*\*\s*[\w.\[\]"'(]*(hop|look)""")
HARD_CODED = re.compile(r"\d\.\d+\s*\*\s*(self\.)?rate")


def _converts(line: str) -> bool:
    return bool(PRODUCT.search(line) or (HARD_CODED.search(line) and re.search(r"hop|look", line)))


def test_no_hop_or_lookahead_conversion_outside_the_events_section():
    """The acceptance check: hop and look-ahead seconds become samples only in deploy/contract/events.py
    (EventSettings.hop_samples, lookahead_samples)."""
    found = []
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in ("deploy/contract/events.py", "tests/test_contract.py") or rel.startswith(".") or ".partial" in rel:
            continue
        found += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
                  if _converts(line)]
    assert not found, "convert with EventSettings.hop_samples / lookahead_samples:\n" + "\n".join(found)


def test_the_grep_finds_the_conversions_it_forbids():
    """Lines the tree held before the events section (deploy/config.py, deploy/stream.py, toolkit/api/evaluate.py,
    tests/test_daemon_acceptance.py), each caught; the rule itself and unrelated products are not."""
    for line in ('hop = max(1, int(round(settings["hop_s"] * spec.rate_hz)))',
                 'lookahead = None if look in ("full", None) else max(0, int(round(float(look) * rate_hz)))',
                 "self.hop = int(settings.hop_samples or max(1, min(self.W, int(0.5 * self.rate))))",
                 'hop, look = int(bundle.manifest["events"]["hop_s"] * spec.rate_hz), bundle.manifest["events"]'):
        assert _converts(line), line
    for line in ("step_amp = _smooth(per_step[step], int(0.08 * rate_hz))", "n = int(round(minutes * 60.0 * rate_hz))"):
        assert not _converts(line), line


def test_preprocess_keeps_its_dict_form():
    preset_form = {"layout": "BCT", "rate_hz": 64, "patch": 8, "n_patches": 128, "min_std": 1.0}
    section = InputSection.of((1, 24, 128), preset_form)
    assert section.to_dict()["preprocess"] == preset_form                   # the keys named, in order, no others
    assert section.spec.window == 1024 and section.spec.normalization == "window"   # the rest: PreprocessSpec's
    assert InputSection.from_dict(section.to_dict()) == section


def test_sections_refuse_what_they_do_not_know():
    with pytest.raises(ConfigError, match="did you mean 'any_fog'"):
        OutputSection.from_dict({"classes": CLASSES, "any_fgo": "sum"})
    with pytest.raises(ConfigError, match="any_fog is 'min'"):
        OutputSection.from_dict({"classes": CLASSES, "any_fog": "min"})
    with pytest.raises(BundleError, match="never more than was measured"):
        ThreadCap.parse("fp32", {"threads": 3, "latency_ms": {"1": 1.0, "2": 0.9}})


def test_a_bundle_refuses_a_bad_section_when_it_is_read(tmp_path):
    from deploy.bundle import write_manifest
    folder = make_bundle(tmp_path / "b")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["events"]["hop_s"] = -1
    write_manifest(folder, manifest)
    bundle = Bundle.load(folder)                        # the files are intact: loading reads no section
    assert bundle.input.spec.rate_hz == 64
    with pytest.raises(BundleError, match=r"manifest events: events.hop_s = -1: must be > 0 and <= 60; re-export"):
        bundle.events


def test_per_class_thresholds_are_how_a_manifest_writes_them():
    settings = replace(EventSettings(), on=0.6)
    assert settings.per_class(CLASSES).on == {c: 0.6 for c in CLASSES}
    assert settings.per_class(CLASSES).off == {c: EventSettings().off for c in CLASSES}


def test_the_schema_in_the_docs_is_generated_from_the_sections():
    from toolkit.export import schema_doc
    page = (REPO / "docs" / "architecture.md").read_text()
    assert schema_doc.documented(page) == schema_doc.block(), \
        "docs/architecture.md's manifest schema is stale: run `python -m toolkit.export.schema_doc --write`"
    for name in SECTIONS:                     # every typed section and every one of its keys is on the page
        assert f"\n{name}: deploy.contract." in page, name
    assert page.count("\noutput: ") == 1       # one output line (there were two, contradicting each other)
