"""Optional heavy dependencies, named at the top of the module that uses them and imported on first use.

    onnx = lazy_import("onnx", "workstation", "exporting ONNX")     # at the top, with the other imports
    ...
    model = onnx.load(path)    # imported here; a missing package raises MissingDependency naming the extra

The idea of Polygraphy's `lazy_import`: a reader sees every dependency where imports are read, yet importing the
module costs nothing and works where the package is absent (torch on the device, tensorrt off a Jetson, paho,
serial, pylsl, matplotlib). The project's own modules are imported normally, at module level.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

from deploy.errors import FogError, MissingDependency

# the toolkit's own top-level packages (one install: pip cannot add one of them apart)
TOOLKIT_PACKAGES = ("deploy", "calibration", "models", "toolkit")


class LazyModule:
    """Stands in for module `name` until an attribute is read, then imports it and delegates. Its own names all
    start with an underscore, so every public name read through it is the module's."""

    def __init__(self, name: str, extra: str, purpose: str, package: str | None = None, on_import=None):
        self.__dict__.update(_name=name, _extra=extra, _purpose=purpose, _on_import=on_import,
                             _package=package or name.split(".")[0])

    def _module(self):
        """The module itself (imported now if it was not), or MissingDependency naming the extra. Looked up in
        sys.modules on every use, never kept here, so a module replaced there (a test's stand-in) is the one used."""
        module = sys.modules.get(self._name)
        if module is None:
            try:
                module = importlib.import_module(self._name)
            except ImportError as exc:
                raise self._missing(exc) from None
            if self._on_import is not None:
                self._on_import(module)
        return module

    def _missing(self, exc: ImportError) -> FogError:
        """What to say when the import failed: the package that is really missing (the module's own, or one it
        needs: `models` without torch names torch), a broken toolkit install, or an import that failed inside."""
        if not isinstance(exc, ModuleNotFoundError):
            return FogError(f"{self._purpose}: importing {self._name!r} failed ({type(exc).__name__}: {exc}); a file "
                            "of yours named like it, or a broken install of it, can cause this")
        top = (exc.name or self._name).split(".")[0]
        if top in TOOLKIT_PACKAGES:
            return FogError(f"{self._purpose} needs the toolkit's own {exc.name or self._name!r}, which this install "
                            "lacks: reinstall fog-edge-toolkit")
        return MissingDependency(self._package if top == self._name.split(".")[0] else top, self._extra,
                                 self._purpose)

    def __getattr__(self, attr: str):
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        state = "imported" if self._name in sys.modules else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_import(name: str, extra: str, purpose: str, package: str | None = None, on_import=None) -> LazyModule:
    """Module `name`, imported when first used; `extra` is the pip extra that installs it, `purpose` what needs it,
    `package` its pip name when that differs (paho-mqtt, pyserial). `on_import(module)` runs once after the import."""
    return LazyModule(name, extra, purpose, package, on_import)


def require(module):
    """Import a lazy module now (to fail early, with MissingDependency, before any work); returns the module.
    The names are kept off LazyModule itself, so they never hide a module's own (torch.load)."""
    return module._module() if isinstance(module, LazyModule) else module


def available(module) -> bool:
    """True when a lazy module's package is installed (found without importing it)."""
    name = module._name if isinstance(module, LazyModule) else module.__name__
    return name in sys.modules or importlib.util.find_spec(name.split(".")[0]) is not None
