"""Deployment bundles: one folder with `manifest.json`, the models, and the engine or its build kit.

The manifest carries every number the device needs; the daemon is configured from it, never from constants of its
own. Every file is listed with its sha256, so a changed byte is caught before anything runs.

The bundle digest (`bundle_digest`) is the sha256 of the canonical manifest (sorted keys, no whitespace, without its
own `digest` field); as the manifest lists every file's sha256, it covers every byte the device acts on. The
manifest records it, so an edited manifest no longer matches; a deployment pins it (`bundle_digest` in the daemon's
config) so a bundle re-made by someone else, digest and all, is refused too. Paths in the manifest stay inside the
bundle: absolute paths, `..` and symlinks that lead out are refused.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from deploy.contract import MANIFEST, SCHEMA_VERSION, SIGNATURE_FILE
from deploy.contract.batching import BatchingSection
from deploy.contract.events import EventSettings
from deploy.contract.manifest import parse_section
from deploy.contract.model import InputSection, ModelFiles, ModelSection, OutputSection
from deploy.contract.runtime import OnnxRuntimeSection, PrecisionPlan, StreamingSection
from deploy.errors import BundleError, FogError, printable

BUNDLE_HELP = "the bundle: a folder made by `toolkit export`"   # every command names it --bundle DIR
REQUIRED_KEYS = ("schema_version", "model", "input", "output", "precision", "models", "files")
DIGEST_KEY = "digest"
DIGEST_PREFIX = "sha256:"
SHA256_RE = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's bytes (the one file hash of the project: bundles, weights, engines)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _bundle_files(folder: Path) -> list[Path]:
    """Every file the manifest lists: all but the manifest itself and the signature of its digest."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() not in (MANIFEST, SIGNATURE_FILE))


def bundle_digest(manifest: dict) -> str:
    """'sha256:<hex>' of the canonical manifest without its digest field: covers the manifest and, through its
    `files` hashes, every file it names."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return DIGEST_PREFIX + hashlib.sha256(text.encode()).hexdigest()


def inside(folder: Path, rel) -> Path:
    """`folder / rel` when `rel` is a relative path that stays in the bundle (symlinks resolved); else BundleError."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise BundleError(f"{folder}: manifest path {rel!r} is not a plain relative path; re-export the bundle")
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts:
        raise BundleError(f"{folder}: manifest path {rel!r} leaves the bundle (absolute or '..'); refusing it — "
                          "a bundle names only files inside its own folder; re-export it")
    path = folder / rel
    root = folder.resolve()
    if path.resolve() != root and root not in path.resolve().parents:
        raise BundleError(f"{folder}: {rel} is a symlink leading out of the bundle (to {path.resolve()}); refusing "
                          "it — copy the file into the bundle and re-export")
    return path


def write_manifest(folder, manifest: dict) -> dict:
    """Write `manifest.json` into `folder`, listing every other file there (but cache/) with its sha256 and size,
    and the bundle digest over all of it."""
    folder = Path(folder)
    manifest = dict(manifest)
    manifest.setdefault("schema_version", SCHEMA_VERSION)
    manifest.pop(DIGEST_KEY, None)
    manifest["files"] = {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                         for p in _bundle_files(folder) if not p.relative_to(folder).as_posix().startswith("cache/")}
    manifest[DIGEST_KEY] = bundle_digest(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def verify_manifest(folder, manifest: dict) -> list[str]:
    """Problems with the manifest itself: its digest, paths leaving the bundle, model files it does not list."""
    problems = []
    recorded = manifest.get(DIGEST_KEY)
    if recorded is None:
        problems.append(f"{MANIFEST}: no bundle digest (exported before digests, or stripped); re-export the bundle")
    elif recorded != bundle_digest(manifest):
        problems.append(f"{MANIFEST}: changed after export (its digest {str(recorded)[:23]} does not match its "
                        f"content {bundle_digest(manifest)[:23]})")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not isinstance(manifest.get("models"), dict):
        return problems + [f"{MANIFEST}: 'files' and 'models' must be tables; re-export the bundle"]
    for role, rel in manifest["models"].items():
        if rel is None:
            continue
        try:
            inside(Path(folder), rel)
        except BundleError as exc:
            problems.append(f"models.{role}: {exc}")
            continue
        if rel not in listed:
            problems.append(f"models.{role} = {rel!r} is not listed under files (no sha256 covers it); re-export")
    return problems


def verify_files(folder, manifest: dict) -> list[str]:
    """Problems found comparing the folder with the manifest (its digest, paths, every file's sha256); empty when
    intact."""
    folder = Path(folder)
    problems = verify_manifest(folder, manifest)
    listed = manifest.get("files", {}) if isinstance(manifest.get("files"), dict) else {}
    for rel, entry in listed.items():
        try:
            path = inside(folder, rel)
        except BundleError as exc:
            problems.append(str(exc))
            continue
        if not isinstance(entry, dict) or not SHA256_RE.fullmatch(str(entry.get("sha256"))) or \
                not isinstance(entry.get("bytes"), int) or isinstance(entry.get("bytes"), bool):
            problems.append(f"{printable(rel)}: manifest entry is not {{sha256: 64 hex digits, bytes: an integer}}; "
                            "re-export the bundle")
        elif not path.is_file():
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
    def load(cls, folder, verify: bool = True, expected_digest: str | None = None) -> "Bundle":
        """Read and (with `verify`) check a bundle; `expected_digest` pins it to the one its owner made."""
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            raise BundleError(f"{folder}: no {MANIFEST} here; is this a bundle made by `toolkit export`?")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path}: not valid JSON ({exc}); re-export the bundle") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{path}: not a JSON object; re-export the bundle")
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
        if expected_digest is not None and bundle_digest(manifest) != expected_digest:
            raise BundleError(f"{folder}: bundle digest {bundle_digest(manifest)} is not the pinned {expected_digest}; "
                              "refusing it. Deploy the bundle that was pinned, or pin this one's digest (printed by "
                              "`toolkit export` and `toolkit inspect`) if you made it")
        return cls(folder, manifest)

    @property
    def digest(self) -> str:
        return bundle_digest(self.manifest)

    # ------------------------------------------------------------------ the manifest's typed sections
    # Each is read (and checked) when first asked for, so a reader that needs one section is not refused for another.

    def _section(self, name: str, classes=None):
        try:
            return parse_section(name, self.manifest.get(name), classes)
        except BundleError as exc:
            raise BundleError(f"{self.folder}: {exc}") from None
        except (FogError, TypeError, ValueError) as exc:
            raise BundleError(f"{self.folder}: manifest {name}: {exc}; re-export the bundle") from None

    @cached_property
    def model(self) -> ModelSection:
        return self._section("model")

    @cached_property
    def input(self) -> InputSection:
        return self._section("input")

    @cached_property
    def output(self) -> OutputSection:
        return self._section("output")

    @cached_property
    def events(self) -> EventSettings:
        """The bundle's event settings (defaults where the manifest says nothing), thresholds checked against its
        classes."""
        return self._section("events", classes=list(self.output.classes)) or EventSettings()

    @cached_property
    def models(self) -> ModelFiles:
        return self._section("models")

    @cached_property
    def onnxruntime(self) -> OnnxRuntimeSection:
        """onnxruntime's settings and measured thread caps (empty for a bundle made before them)."""
        return self._section("onnxruntime") or OnnxRuntimeSection()

    @cached_property
    def precision_plan(self) -> PrecisionPlan | None:
        return self._section("precision_plan")

    @cached_property
    def streaming(self) -> StreamingSection | None:
        return self._section("streaming")

    @cached_property
    def batching(self) -> BatchingSection:
        """The batch sizes the bundle's graphs come in (batch 1 only for a bundle without the section)."""
        return self._section("batching") or BatchingSection(sizes=(int(self.input.shape[0]),))

    def path_at(self, role: str, size: int) -> Path | None:
        """File of model `role` at batch `size` (the bundle's own file for the first size); never outside it."""
        rel = self.batching.file(role, size)
        return self.path(role) if rel is None else inside(self.folder, rel)

    def check(self) -> "Bundle":
        """Every typed section read now (each is otherwise read when first asked for): a reader of the whole manifest
        (`toolkit inspect`) refuses a value out of type or range anywhere before printing or using any."""
        for name in ("model", "input", "output", "events", "models", "onnxruntime", "precision_plan", "streaming",
                     "batching"):
            getattr(self, name)
        return self

    @property
    def spec(self):
        """The input's deploy.preprocess.PreprocessSpec."""
        return self.input.preprocess

    @property
    def precision(self) -> str:
        return self.manifest.get("precision") or "fp32"

    def path(self, role: str) -> Path | None:
        """File of a model role ('fp32', 'fp16', 'int8', 'engine'), or None when the bundle has none; never a path
        outside the bundle."""
        rel = self.models.of(role)
        return inside(self.folder, rel) if rel else None

    @property
    def classes(self) -> list[str]:
        return list(self.output.classes)
