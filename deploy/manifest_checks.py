"""The manifest's values, typed and range-checked before anything uses them (issue 28).

A digest says the manifest is the one that was exported (or re-digested); it does not say its numbers are sane. A
window of 1e8 patches would allocate for minutes before READY, a rate of "64" (a string) would fail deep in
numpy, a thread count of -3 would reach onnxruntime. `manifest_problems(manifest)` lists every value outside its type
or range, each naming the key and what is allowed; `Bundle.load` refuses a bundle with any (BundleError).

One function per manifest section, so each moves onto the typed section of `deploy/contract` as it lands.
"""
from __future__ import annotations

import math
import re

from deploy.errors import printable

MAX_RATE_HZ = 100_000.0
MAX_WINDOW = 1 << 20          # samples in one model window: 2.3 h at 128 Hz, far beyond any FOG model
MAX_PATCH = 1 << 14
MAX_CLASSES = 256
MAX_DIM = 1 << 24             # any one dimension of a tensor shape
SHA256_RE = re.compile(r"[0-9a-f]{64}")
UNITS = ("g", "m/s^2")
NORMALIZATIONS = ("recording", "window", "running")
LAYOUTS = ("BCT", "BTC")
OUTPUT_PER = ("patch", "sample", "window")
ACTIVATIONS = ("sigmoid", "softmax", "none")


def _number(value, key: str, lo: float, hi: float, *, integer: bool = False, above: bool = False) -> list[str]:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        return [f"{key} = {printable(repr(value))[:60]}: expected {kind} (not {type(value).__name__})"]
    if not math.isfinite(value) or value < lo or value > hi or (above and value == lo):
        return [f"{key} = {value!r}: must be {'>' if above else '>='} {_plain(lo)} and <= {_plain(hi)}"]
    return []


def _plain(x: float) -> str:
    """1048576 -> '1,048,576', 0.5 -> '0.5'."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _choice(value, key: str, options) -> list[str]:
    return [] if isinstance(value, str) and value in options else \
        [f"{key} = {printable(repr(value))[:60]}: expected one of {', '.join(options)}"]


def _strings(value, key: str, *, non_empty: bool = True, limit: int = 1 << 16) -> list[str]:
    if not isinstance(value, list) or (non_empty and not value) or len(value) > limit or \
            not all(isinstance(v, str) and v for v in value):
        return [f"{key}: expected a list of names{' (at least one)' if non_empty else ''}"]
    return []


def _shape(value, key: str) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= 8 or \
            any(_number(d, key, 1, MAX_DIM, integer=True) for d in value):
        return [f"{key} = {printable(repr(value))[:80]}: expected a list of 1 to 8 positive integers"]
    return []


def preprocess_problems(pre) -> list[str]:
    """input.preprocess: what the device prepares the stream with."""
    key = "input.preprocess"
    if not isinstance(pre, dict):
        return [f"{key}: expected a table"]
    problems = _number(pre.get("rate_hz"), f"{key}.rate_hz", 0, MAX_RATE_HZ, above=True)
    problems += _choice(pre.get("units", "g"), f"{key}.units", UNITS)
    problems += _number(pre.get("patch", 1), f"{key}.patch", 1, MAX_PATCH, integer=True)
    problems += _number(pre.get("n_patches", 128), f"{key}.n_patches", 1, MAX_WINDOW, integer=True)
    if not problems and pre.get("patch", 1) * pre.get("n_patches", 128) > MAX_WINDOW:
        problems.append(f"{key}: a window of patch x n_patches = {pre.get('patch', 1) * pre.get('n_patches', 128):,} "
                        f"samples is over {MAX_WINDOW:,}")
    problems += _choice(pre.get("normalization", "window"), f"{key}.normalization", NORMALIZATIONS)
    problems += _choice(pre.get("layout", "BCT"), f"{key}.layout", LAYOUTS)
    scale = pre.get("scale", 1.0)
    problems += _number(scale, f"{key}.scale", -1e9, 1e9) or ([f"{key}.scale = 0: must not be 0"] if scale == 0 else [])
    for name in ("running_tau_s", "running_block_s"):
        if name in pre:
            problems += _number(pre[name], f"{key}.{name}", 0, 1e6, above=True)
    if "min_std" in pre:
        problems += _number(pre["min_std"], f"{key}.min_std", 0, 1e6)
    if not isinstance(pre.get("gravity_align", False), bool):
        problems.append(f"{key}.gravity_align: expected true or false")
    return problems


def io_problems(manifest: dict) -> list[str]:
    """input and output: names, shapes, axes, classes."""
    inp, out = manifest.get("input"), manifest.get("output")
    if not isinstance(inp, dict) or not isinstance(out, dict):
        return ["input and output: expected tables"]
    problems = preprocess_problems(inp.get("preprocess"))
    for key, section in (("input", inp), ("output", out)):
        if not isinstance(section.get("name"), str):
            problems.append(f"{key}.name: expected a string")
        problems += _shape(section.get("shape"), f"{key}.shape")
    if "axes" in inp:
        problems += _strings(inp["axes"], "input.axes")
    problems += _strings(out.get("classes"), "output.classes", limit=MAX_CLASSES)
    if not problems and len(set(out["classes"])) != len(out["classes"]):
        problems.append("output.classes: a class is named twice")
    if "per" in out:
        problems += _choice(out["per"], "output.per", OUTPUT_PER)
    if "activation" in out:
        problems += _choice(out["activation"], "output.activation", ACTIVATIONS)
    if "background" in out:
        problems += _strings(out["background"], "output.background", non_empty=False, limit=MAX_CLASSES)
    return problems


def listing_problems(manifest: dict) -> list[str]:
    """models and files: the paths and hashes the integrity check reads (their paths are checked there)."""
    problems = []
    models, files = manifest.get("models"), manifest.get("files")
    if not isinstance(models, dict) or not all(v is None or isinstance(v, str) for v in models.values()):
        problems.append("models: expected a table of role -> file name (or null)")
    if not isinstance(files, dict):
        return problems + ["files: expected a table of file -> {sha256, bytes}"]
    for rel, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or \
                not SHA256_RE.fullmatch(entry["sha256"]) or _number(entry.get("bytes"), "", 0, 1 << 40, integer=True):
            problems.append(f"files[{printable(rel)!r}]: expected {{sha256: 64 hex digits, bytes: an integer}}")
    notes = (manifest.get("model") or {}).get("notes") if isinstance(manifest.get("model"), dict) else None
    if notes is not None:
        problems += _strings(notes, "model.notes", non_empty=False)
    return problems


def manifest_problems(manifest: dict) -> list[str]:
    """Every value of the manifest outside its type or range (empty when all are sane)."""
    if not isinstance(manifest.get("model"), dict):
        return ["model: expected a table"]
    return io_problems(manifest) + listing_problems(manifest)
