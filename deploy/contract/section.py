"""What every typed manifest section shares: a frozen dataclass whose fields are the section's keys, in the order the
exporter writes them, with `from_dict` and `to_dict` that round-trip a manifest exactly.

A field's `metadata["doc"]` says what the key holds (docs/architecture.md's schema is generated from it); a field
with `metadata["manifest"] = False` is not a key (e.g. a typed view of one); keys in a section's `OPTIONAL` are
written only when set (the exporter leaves them out otherwise).
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import ClassVar

from deploy.contract.checks import known_keys
from deploy.errors import ConfigError


def key(default=MISSING, doc: str = "", **kw):
    """A section field with its documentation (the schema in docs/architecture.md shows `doc`)."""
    if isinstance(default, (dict, list)):
        kw["default_factory"] = (lambda value=default: type(value)(value))
    elif default is not MISSING:
        kw["default"] = default
    return field(metadata={"doc": doc, **kw.pop("metadata", {})}, **kw)


def plain(value):
    """A section value as JSON data: nested sections as dicts, tuples as lists."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def manifest_fields(cls) -> list:
    """The fields of a section that are manifest keys, in order."""
    return [f for f in fields(cls) if f.metadata.get("manifest", True)]


@dataclass(frozen=True)
class Section:
    """Base of the manifest's typed sections (see the module docstring)."""
    KEY: ClassVar[str] = ""            # the section's key in manifest.json
    OPTIONAL: ClassVar[tuple] = ()     # keys written only when not None

    @classmethod
    def from_dict(cls, data) -> "Section":
        """The section from its manifest dict: unknown keys refused (naming the nearest), absent keys take their
        default, JSON lists become tuples."""
        names = [f.name for f in manifest_fields(cls)]
        known_keys(data, names, cls.KEY)
        missing = [f.name for f in manifest_fields(cls) if f.name not in data and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise ConfigError(f"{cls.KEY} lacks {', '.join(missing)}")
        return cls(**cls.convert({k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}))

    @classmethod
    def convert(cls, values: dict) -> dict:
        """Hook: the constructor's arguments from the manifest's values (typed sub-objects)."""
        return values

    def to_dict(self) -> dict:
        """The section as manifest.json holds it."""
        out = {}
        for f in manifest_fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = plain(value)
        return out
