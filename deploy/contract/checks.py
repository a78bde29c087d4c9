"""Value checks shared by the manifest's sections and the daemon's settings: each error names the key, the value
and what would be right (deploy.errors.ConfigError), so a wrong hop reads the same from a flag, a TOML file or a
bundle's manifest."""
from __future__ import annotations

import math

from deploy.errors import ConfigError, did_you_mean


def number(lo: float | None = None, hi: float | None = None, *, integer: bool = False, optional: bool = False,
           above: bool = False):
    """A checker `(value, name) -> value`: a finite int/float in [lo, hi] (lo exclusive when `above`); None allowed
    when `optional`."""
    def check(value, name):
        if value is None and optional:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ConfigError(f"{name} = {value!r}: expected {'an integer' if integer else 'a number'}")
        if not math.isfinite(value):
            raise ConfigError(f"{name} = {value!r}: must be a finite number")
        low_ok = lo is None or (value > lo if above else value >= lo)
        if not low_ok or (hi is not None and value > hi):
            low = "" if lo is None else f"{'>' if above else '>='} {lo:g}"
            high = "" if hi is None else f"<= {hi:g}"
            raise ConfigError(f"{name} = {value!r}: must be {' and '.join(p for p in (low, high) if p)}")
        return value
    return check


def known_keys(table, known, where: str) -> dict:
    """`table` when it is a dict whose keys are all in `known`; else ConfigError naming the nearest known key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} ({did_you_mean(key, known)})")
    return table


MAX_DIM = 1 << 24   # any one dimension of a tensor shape in a manifest


def names(value, name: str, *, non_empty: bool = True, limit: int = 1 << 16, unique: bool = False):
    """A tuple of non-empty strings (class names, axes, notes), at most `limit` of them."""
    if not isinstance(value, (list, tuple)) or (non_empty and not value) or len(value) > limit or \
            not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name}: expected a list of {'at least one ' if non_empty else ''}non-empty names "
                          f"(at most {limit:,})")
    if unique and len(set(value)) != len(value):
        raise ConfigError(f"{name}: a name is given twice")
    return value


def shape(value, name: str, *, empty: bool = False):
    """A static tensor shape: 1 to 8 positive integers (or none when `empty`)."""
    if not isinstance(value, (list, tuple)) or not (empty and not value or 1 <= len(value) <= 8) or \
            not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_DIM for d in value):
        raise ConfigError(f"{name} = {list(value) if isinstance(value, (list, tuple)) else value!r}: expected a "
                          "list of 1 to 8 positive integers")
    return value
