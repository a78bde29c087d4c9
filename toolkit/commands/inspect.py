"""Print a deployment bundle for a person: model, input/output spec, precision, target, checks, verification.

With --verify: the manifest's digest, its paths (none may leave the bundle) and every file's sha256 are checked,
then every ONNX graph is loaded (a hash does not make a truncated file a model; external data must stay inside the
bundle and be listed), then the signature against the trusted keys (--trusted-key, or the daemon's config with
--config: `trusted_keys`, `require_signature` and a pinned `bundle_digest`), as the daemon checks them. Anything
wrong makes the command fail (exit 2); a bundle nothing anchors (no trusted signature, no pin) passes with a loud
warning. Text from the manifest is printed with control characters escaped. --json prints the raw manifest. The
bundle digest is printed either way (pin it in the daemon's config: `bundle_digest = "sha256:..."`).
"""
from __future__ import annotations

import json
import sys

from deploy.bundle import Bundle, bundle_digest
from deploy.config import load_toml
from deploy.errors import BundleError, printable
from deploy.settings import checked
from deploy.signing import bundle_trust
from toolkit.cli import UserError
from toolkit.commands._options import add_bundle, add_json, bundle_of
from toolkit.export.graph_check import graph_problems
from toolkit.export.lookahead import lines as lookahead_lines
from toolkit.export.ranges import ranges_line
from toolkit.export.verify import describe

HELP = "print a bundle's manifest for a person (--verify checks every file's sha256)"


def add_arguments(p) -> None:
    add_bundle(p, positional=True)
    p.add_argument("--verify", action="store_true",
                   help="check every file against the manifest, load every graph, check the signature (exit 2 if not)")
    p.add_argument("--config", help="the daemon's TOML: check against its trusted_keys, require_signature and pin")
    p.add_argument("--trusted-key", action="append", default=[], metavar="KEY",
                   help="a public key whose signature counts (KEY.pub from `toolkit keygen`, or its base64); "
                        "repeatable")
    p.add_argument("--require-signature", action="store_true", help="refuse a bundle no trusted key signed")
    add_json(p)


def _describe(bundle: Bundle) -> str:
    manifest, t = bundle.manifest, bundle.manifest.get("target", {})
    m, i, o, pre = bundle.model, bundle.input, bundle.output, bundle.spec
    lines = [
        f"model      {m.name} (source {m.source}, preset {m.preset}, tsai_compat {m.tsai_compat})",
        f"           {m.parameters or 0:,} parameters, weights sha256 {str(m.weights_sha256)[:16]}",
        f"input      {i.name} {list(i.shape)} {i.dtype}: {pre.rate_hz} Hz, units {pre.units}, window {pre.window} "
        f"samples = {pre.n_patches} x patch {pre.patch}, layout {pre.layout}, normalization {pre.normalization}, "
        f"axes {', '.join(i.axes)}",
        f"output     {o.name} {list(o.shape)} per {o.per}, {o.activation}: {', '.join(o.classes)}",
        f"precision  {bundle.precision}   models: " + ", ".join(f"{k}={v}" for k, v in bundle.models.to_dict().items()
                                                            if v),
        f"target     {t.get('name')}: {t.get('description')}",
        "events     " + ", ".join(f"{k}={v}" for k, v in bundle.events.to_dict().items()),
    ]
    ranges = ranges_line((manifest.get("export") or {}).get("calibration"))
    if ranges:
        lines.append(f"int8       {ranges}")
    checks = manifest.get("checks", [])
    lines.append(f"checks     {sum(c['passed'] for c in checks)}/{len(checks)} passed")
    for c in checks:
        verdict = "ok" if c["passed"] else "WARN" if c.get("warning") else "FAIL"
        lines.append(f"  [{verdict}] {c.get('model', '')}: {c['name']}: {c['detail'][:100]}")
    look = (manifest.get("streaming") or {}).get("lookahead")
    if look:   # what each look-ahead did at export, and the one the bundle runs
        lines += lookahead_lines(look)
    ver = manifest.get("verification", {})
    lines.append(f"verified   on {ver.get('windows')} windows")
    for name, v in ver.get("pairs", {}).items():
        lines.append(f"  {name:<24} {describe(v)}")
    lines.append(f"files      {len(manifest['files'])} (toolkit {manifest.get('toolkit_version')}, created "
                 f"{manifest.get('created')})")
    for rel, entry in manifest["files"].items():
        lines.append(f"  {rel:<34} {entry['bytes']:>12,}  {entry['sha256'][:16]}")
    lines += [f"note       {note}" for note in m.notes]
    return "\n".join(lines)


def _trust_settings(args) -> dict:
    """trusted_keys, require_signature and bundle_digest: the daemon's config (--config), then the flags."""
    settings = {"trusted_keys": [], "require_signature": None, "bundle_digest": None}
    if args.config:
        given = load_toml(args.config)
        settings.update({k: given[k] for k in settings if k in given})
    settings["trusted_keys"] = list(settings["trusted_keys"] or []) + list(args.trusted_key)
    if args.require_signature:
        settings["require_signature"] = True
    for key, value in settings.items():   # the daemon's own checks of these keys
        checked(key, value)
    return settings


def _verify(bundle, settings: dict) -> None:
    """Graphs load, and the signature (or pin) is what the settings ask; prints what vouches for the bundle."""
    problems, loaded = graph_problems(bundle)
    if problems:
        raise BundleError(f"{bundle.folder}: bundle failed verification, refusing it:\n  - " + "\n  - ".join(problems)
                          + "\nRe-export it, or copy it again intact.")
    trust = bundle_trust(bundle.folder, bundle.digest, settings)
    print(f"verified: all {len(bundle.manifest['files'])} files match the manifest's sha256, and the manifest its "
          f"digest; graphs loaded: {', '.join(loaded) or 'none'}")
    print(f"trust      {trust.describe()}")
    for warning in trust.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)


def run(args) -> int:
    settings = _trust_settings(args)
    folder = bundle_of(args)
    if not folder:
        raise UserError("which bundle? give --bundle DIR")
    bundle = Bundle.load(folder, verify=args.verify,   # BundleError (exit 2) names every changed file
                         expected_digest=settings["bundle_digest"] if args.verify else None).check()
    if args.json:
        print(json.dumps(bundle.manifest, indent=2))   # JSON escapes control characters itself
    else:
        print("\n".join(printable(line) for line in _describe(bundle).splitlines()))
        print(f"digest     {bundle_digest(bundle.manifest)}")
    if args.verify:
        _verify(bundle, settings)
    return 0
