"""Print a deployment bundle for a person: model, input/output spec, precision, target, checks, verification.

With --verify the manifest's digest, its paths (none may leave the bundle) and every file's sha256 are checked
first; a changed byte, in a file or in the manifest, makes the command fail. --json prints the raw manifest. The bundle digest is printed either way
(pin it in the daemon's config: `bundle_digest = "sha256:..."`).
"""
from __future__ import annotations

import json

from deploy.bundle import Bundle, bundle_digest
from toolkit.cli import UserError
from toolkit.commands._options import add_bundle, add_json, bundle_of
from toolkit.export.ranges import ranges_line
from toolkit.export.verify import describe

HELP = "print a bundle's manifest for a person (--verify checks every file's sha256)"


def add_arguments(p) -> None:
    add_bundle(p, positional=True)
    p.add_argument("--verify", action="store_true", help="check every file against the manifest (exit 2 if not)")
    add_json(p)


def _describe(manifest: dict) -> str:
    m, i, o, t = manifest["model"], manifest["input"], manifest["output"], manifest.get("target", {})
    pre = i["preprocess"]
    lines = [
        f"model      {m['name']} (source {m['source']}, preset {m.get('preset')}, tsai_compat {m.get('tsai_compat')})",
        f"           {m.get('parameters', 0):,} parameters, weights sha256 {str(m.get('weights_sha256'))[:16]}",
        f"input      {i['name']} {i['shape']} {i['dtype']}: {pre.get('rate_hz')} Hz, units {pre.get('units')}, "
        f"window {int(pre['patch']) * int(pre['n_patches'])} samples = {pre['n_patches']} x patch {pre['patch']}, "
        f"layout {pre.get('layout', 'BCT')}, normalization {pre.get('normalization')}, axes {', '.join(i['axes'])}",
        f"output     {o['name']} {o['shape']} per {o['per']}, {o['activation']}: {', '.join(o['classes'])}",
        f"precision  {manifest['precision']}   models: "
        + ", ".join(f"{k}={v}" for k, v in manifest["models"].items() if v),
        f"target     {t.get('name')}: {t.get('description')}",
        "events     " + ", ".join(f"{k}={v}" for k, v in manifest.get("events", {}).items()),
    ]
    ranges = ranges_line((manifest.get("export") or {}).get("calibration"))
    if ranges:
        lines.append(f"int8       {ranges}")
    checks = manifest.get("checks", [])
    lines.append(f"checks     {sum(c['passed'] for c in checks)}/{len(checks)} passed")
    for c in checks:
        lines.append(f"  [{'ok' if c['passed'] else 'FAIL'}] {c.get('model', '')}: {c['name']}: {c['detail'][:100]}")
    ver = manifest.get("verification", {})
    lines.append(f"verified   on {ver.get('windows')} windows")
    for name, v in ver.get("pairs", {}).items():
        lines.append(f"  {name:<24} {describe(v)}")
    lines.append(f"files      {len(manifest['files'])} (toolkit {manifest.get('toolkit_version')}, created "
                 f"{manifest.get('created')})")
    for rel, entry in manifest["files"].items():
        lines.append(f"  {rel:<34} {entry['bytes']:>12,}  {entry['sha256'][:16]}")
    lines += [f"note       {note}" for note in m.get("notes") or []]
    return "\n".join(lines)


def run(args) -> int:
    folder = bundle_of(args)
    if not folder:
        raise UserError("which bundle? give --bundle DIR")
    bundle = Bundle.load(folder, verify=args.verify)  # BundleError (exit 2) names every changed file
    if args.json:
        print(json.dumps(bundle.manifest, indent=2))
    else:
        print(_describe(bundle.manifest))
        print(f"digest     {bundle_digest(bundle.manifest)}")
    if args.verify:
        print(f"verified: all {len(bundle.manifest['files'])} files match the manifest's sha256, and the manifest "
              "its digest")
    return 0
