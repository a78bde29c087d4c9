"""Finding the first bad cell of a text table, for the readers' errors (CSV layouts and Daphnet text alike)."""
from __future__ import annotations

from deploy.errors import DataError


def locate_bad_cell(text: str, names: list[str], path, *, first_row: int, separator: str | None, what: str,
                    count_fix: str, value_fix: str) -> None:
    """Raise a DataError naming the first line whose cell count differs from `names` or whose cell is not a
    number (`first_row`: the file's line number of the text's first line; `separator` None splits on spaces)."""
    for i, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split(separator)
        if len(cells) != len(names):
            raise DataError(f"{len(cells)} {what} where the file has {len(names)} columns", file=str(path),
                            row=i + first_row, fix=count_fix)
        for name, cell in zip(names, cells):
            try:
                float(cell)
            except ValueError:
                noun = what.rstrip("s")
                raise DataError(f"non-numeric {noun} {cell.strip()!r}", file=str(path), row=i + first_row,
                                column=name, fix=value_fix) from None
    raise DataError("the file could not be parsed as a table of numbers", file=str(path))
