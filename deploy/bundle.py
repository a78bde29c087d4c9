"""Deployment bundles: one folder with `manifest.json`, the models, and the engine or its build kit.

The manifest carries every number the device needs; the daemon is configured from it, never from constants of its
own. Every file is listed with its sha256, so a changed byte is caught before anything runs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from deploy.contract import MANIFEST, SCHEMA_VERSION
from deploy.errors import BundleError

REQUIRED_KEYS = ("schema_version", "model", "input", "output", "precision", "models", "files")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's bytes (the one file hash of the project: bundles, weights, engines)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _bundle_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder, manifest: dict) -> dict:
    """Write `manifest.json` into `folder`, listing every other file there with its sha256 and size."""
    folder = Path(folder)
    manifest = dict(manifest)
    manifest.setdefault("schema_version", SCHEMA_VERSION)
    manifest["files"] = {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                         for p in _bundle_files(folder)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def verify_files(folder, manifest: dict) -> list[str]:
    """Problems found comparing the folder with the manifest's file list (empty when intact)."""
    folder = Path(folder)
    problems = []
    listed = manifest.get("files", {})
    for rel, entry in listed.items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: listed in the manifest but missing")
        elif path.stat().st_size != entry.get("bytes"):
            problems.append(f"{rel}: size {path.stat().st_size} bytes, manifest says {entry.get('bytes')}")
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(f"{rel}: sha256 differs from the manifest (the file was changed after export)")
    for path in _bundle_files(folder):
        rel = path.relative_to(folder).as_posix()
        if rel not in listed and not rel.startswith("cache/"):
            problems.append(f"{rel}: present but not listed in the manifest")
    return problems


@dataclass
class Bundle:
    folder: Path
    manifest: dict = field(repr=False)

    @classmethod
    def load(cls, folder, verify: bool = True) -> "Bundle":
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            raise BundleError(f"{folder}: no {MANIFEST} here; is this a bundle made by `toolkit export`?")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path}: not valid JSON ({exc}); re-export the bundle") from None
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise BundleError(f"{path}: missing keys {missing}; re-export the bundle with this toolkit version")
        if manifest["schema_version"] != SCHEMA_VERSION:
            raise BundleError(f"{path}: schema_version {manifest['schema_version']}, this toolkit reads "
                              f"{SCHEMA_VERSION}; re-export the bundle or use a matching toolkit")
        if verify:
            problems = verify_files(folder, manifest)
            if problems:
                raise BundleError(f"{folder}: bundle failed verification, refusing to use it:\n  - "
                                  + "\n  - ".join(problems) + "\nRe-export it, or copy it again intact.")
        return cls(folder, manifest)

    def path(self, role: str) -> Path | None:
        """File of a model role ('fp32', 'fp16', 'int8', 'engine'), or None when the bundle has none."""
        rel = self.manifest["models"].get(role)
        return self.folder / rel if rel else None

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["output"]["classes"])
