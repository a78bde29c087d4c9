"""`toolkit inspect --verify`: every graph a bundle names must load, not only hash right.

A hash says the bytes are the ones the manifest lists; it says nothing about whether they are a model. Someone who
recomputes the hashes and the digest can ship a truncated ONNX, or one whose external data points outside the
bundle (to a file the hashes never covered). So each ONNX graph is parsed (`onnx`, without its external data), each
external data location must be a relative path inside the bundle that the manifest lists, and each graph is loaded
by onnxruntime (optimizations off: loading is the question, not speed), its one input and output named as the
manifest says. A TensorRT engine cannot be loaded without TensorRT: it is reported as not loaded.
"""
from __future__ import annotations

from pathlib import Path

from deploy.bundle import inside
from deploy.engines.session import SessionSettings, open_session
from deploy.errors import BundleError, printable
from deploy.lazy import lazy_import

onnx = lazy_import("onnx", "workstation", "checking a bundle's graphs")


def _external_problems(model, folder: Path, listed: dict, rel: str) -> list[str]:
    """External data locations of `model` that are absolute, leave the bundle or are not listed (unhashed)."""
    problems = []
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        try:
            path = inside(folder, str(Path(rel).parent / location) if Path(rel).parent != Path(".") else location)
        except BundleError as exc:
            problems.append(f"{rel}: initializer {printable(tensor.name)!r}: external data {printable(location)!r}: "
                            f"{exc}")
            continue
        if path.relative_to(folder).as_posix() not in listed:
            problems.append(f"{rel}: initializer {printable(tensor.name)!r}: external data {printable(location)!r} "
                            "is not listed in the manifest (no sha256 covers it)")
    return problems


def _loads(path: Path, rel: str, manifest: dict) -> list[str]:
    try:   # optimizations off: whether it loads is the question, not how fast it runs
        session = open_session(path, SessionSettings(threads=1, optimization="none"))
    except BundleError as exc:
        return [f"{rel}: {printable(str(exc))[:400]}"]
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    expected = [manifest.get("input", {}).get("name")], [manifest.get("output", {}).get("name")]
    if names != expected:
        return [f"{rel}: inputs/outputs {names}, the manifest says {expected}"]
    return []


def _role_problems(bundle, role: str, rel: str) -> list[str]:
    try:
        model = onnx.load(str(bundle.path(role)), load_external_data=False)
    except Exception as exc:   # protobuf's DecodeError and friends: a truncated or foreign file
        return [f"{rel}: not a readable ONNX model ({type(exc).__name__}: {printable(str(exc))[:200]})"]
    listed = bundle.manifest.get("files") or {}
    return _external_problems(model, bundle.folder, listed, rel) or _loads(bundle.path(role), rel, bundle.manifest)


def graph_problems(bundle) -> tuple[list[str], list[str]]:
    """(problems, roles loaded): every ONNX graph of the bundle parsed, its external data checked, and loaded; a
    TensorRT engine (not ONNX) is neither."""
    problems, loaded = [], []
    for role, rel in (bundle.manifest.get("models") or {}).items():
        if rel and str(rel).endswith(".onnx"):
            found = _role_problems(bundle, role, str(rel))
            problems += found
            loaded += [] if found else [role]
    return problems, loaded
