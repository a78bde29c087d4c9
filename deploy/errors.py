"""User-facing errors. Each message says what is wrong and what to do; the CLIs print it without a traceback.

`printable(text)` is how text from outside (a manifest's strings, a sensor's line) reaches a terminal or a log:
control and format characters escaped, so an escape sequence in a bundle cannot rewrite what the user sees.
"""
from __future__ import annotations

import difflib
import unicodedata

# control (Cc), format (Cf: bidi overrides, zero-width), line and paragraph separators, surrogates, unassigned
_UNPRINTABLE = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def printable(text) -> str:
    """`text` as str with every control or format character escaped (\\x1b, \\u202e); plain text unchanged."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch == " " or unicodedata.category(ch) not in _UNPRINTABLE
                   else (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}") for ch in text)


class FogError(Exception):
    """Base of every error that is the user's to fix (bad file, bad flag, tampered bundle...)."""


class DataError(FogError):
    """A recording that cannot be read as given. Names the file, and the row and column where known."""

    def __init__(self, problem: str, *, file=None, row: int | None = None, column: str | None = None,
                 fix: str | None = None):
        where = ", ".join(p for p in (
            f"{file}" if file is not None else None,
            f"row {row}" if row is not None else None,
            f"column {column!r}" if column is not None else None) if p)
        msg = f"{where}: {problem}" if where else problem
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)
        self.file, self.row, self.column, self.problem, self.fix = file, row, column, problem, fix


class BundleError(FogError):
    """A deployment bundle that is missing, malformed or fails its hash check."""


class MissingDependency(FogError):
    """An optional dependency is not installed; the message names the extra to install (or, for what pip does not
    install, where it comes from: TensorRT and libcudart on a Jetson come with JetPack)."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(f"{purpose} needs the '{package}' package, which is not installed "
                         f"({install_advice(package, extra)})")
        self.package, self.extra = package, extra


# what pip cannot (or should not) install: where it comes from instead
JETPACK = ("on a Jetson it comes with JetPack (sudo apt install nvidia-jetpack, or python3-libnvinfer for TensorRT's "
           "Python bindings), not from pip")
NOT_FROM_PIP = {"tensorrt": JETPACK, "libcudart": JETPACK,
                "torch": "install the CPU or CUDA wheel for your machine from pytorch.org first, then: pip install "
                         "'fog-edge-toolkit[workstation]'"}


def on_jetson() -> bool:
    """This machine is a Jetson (L4T writes /etc/nv_tegra_release)."""
    import os
    return os.path.exists("/etc/nv_tegra_release")


def install_advice(package: str, extra: str) -> str:
    """How to get `package`: the toolkit's extra, or where it comes from when pip is the wrong way."""
    pip = f"pip install 'fog-edge-toolkit[{extra}]'"
    if package in ("tensorrt", "libcudart"):
        return JETPACK if on_jetson() else f"{JETPACK}; on an x86 or SBSA workstation with an NVIDIA GPU: {pip}"
    return NOT_FROM_PIP.get(package) or f"install it with: {pip} or pip install {package}"


class ConfigError(FogError):
    """A setting that is wrong (the daemon's, an event setting from a flag, a file or a manifest): names the key, the
    value and what would be right."""


class SpecError(FogError):
    """A preprocessing spec (or resampling ratio) that cannot be used as given."""


def closest(name, known, cutoff: float = 0.6) -> str | None:
    """The name in `known` a typo of `name` most likely meant, None when none is close (the one nearest-name rule of
    the project; models/_keywords keeps a copy of this one line because models/ imports torch only)."""
    match = difflib.get_close_matches(str(name), sorted(map(str, known)), n=1, cutoff=cutoff)
    return match[0] if match else None


def did_you_mean(name, known) -> str:
    """"did you mean 'hop_s'?" for a typo, else the list of known names."""
    match = closest(name, known)
    return f"did you mean {match!r}?" if match else f"known: {', '.join(sorted(map(str, known)))}"


def reader_gone() -> int:
    """Our reader went away (`toolkit targets | head`): stop quietly, as a Unix filter does, with the status a shell
    shows for one stopped by SIGPIPE. stdout is pointed at /dev/null first: Python flushes it again at exit and
    would print a second error there."""
    import os
    import sys
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):   # no real file descriptor behind stdout (a test's StringIO)
        pass
    return 141   # 128 + SIGPIPE
