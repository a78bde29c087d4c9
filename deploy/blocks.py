"""Long recordings in blocks: replay reads a CSV a block of rows at a time, so memory does not grow with its length.

`open_replay(path, layout)` returns the first block (rate, units and layout come from it) and an iterator over every
block, the first included. CSV files (the Kaggle layouts and mappings) are read `BLOCK_ROWS` rows at a time through
`deploy.recording.read_csv_text`, the same parser as a whole-file read; a line longer than `MAX_LINE_BYTES` is refused
when it is met (before it is held in memory whole), with its row. npz archives, Stanford workbooks (.xlsx) and Daphnet
text files are read whole (an npz is refused beforehand when it would unpack to more than `MAX_NPZ_BYTES`). Errors name
the file and the row in the file, as a whole-file read would.
"""
from __future__ import annotations

from itertools import chain
from pathlib import Path

from deploy import daphnet, stanford
from deploy.errors import DataError
from deploy.recording import WHOLE_FILE_SUFFIXES, read_csv_text, read_recording

BLOCK_ROWS = 1 << 15
MAX_LINE_BYTES = 4096     # a recording's row is a few dozen bytes; anything this long is not one


def _read_line(fh, path, row: int) -> bytes:
    line = fh.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise DataError(f"a line longer than {MAX_LINE_BYTES} bytes", file=str(path), row=row,
                        fix="this is not a recording's row; check the file (a missing newline, binary data)")
    return line


def _decode(data: bytes, path, row: int) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError("not a text (CSV) file", file=str(path), row=row,
                        fix=f"bytes at {exc.start} are not UTF-8; pass an npz or a CSV file") from None


def _csv_blocks(path: Path, fh, header: bytes, layout, block_rows: int):
    row, rate, units = 2, None, None
    while True:
        lines = []
        while len(lines) < block_rows and (line := _read_line(fh, path, row + len(lines))):
            lines.append(line)
        if not lines:
            return
        body = b"".join(lines)
        if body.strip():
            try:
                rec = read_csv_text(path, _decode(header + body, path, row), layout, None, rate, units)
            except DataError as exc:
                if exc.row is None:
                    raise
                raise DataError(exc.problem, file=exc.file, row=exc.row + row - 2, column=exc.column,
                                fix=exc.fix) from None
            layout, rate, units = rec.meta.get("layout", layout), rec.rate_hz, rec.units
            yield rec
        row += len(lines)


def open_replay(path, layout: str | None = None, block_rows: int = BLOCK_ROWS):
    """(first block, iterator over all blocks). Whole-file reads for npz, xlsx, Daphnet and custom mappings."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=str(path), fix="check the path")
    if path.suffix.lower() in WHOLE_FILE_SUFFIXES or layout == "npz" or layout in daphnet.LAYOUT_POSITIONS \
            or layout in stanford.LAYOUT_IMUS:
        rec = read_recording(path, layout=layout)
        return rec, iter([rec])
    fh = open(path, "rb")
    header = _read_line(fh, path, 1)
    first_line = _decode(header, path, 1).rstrip("\r\n")
    if daphnet.looks_like_daphnet(first_line) and layout is None:
        fh.close()
        rec = read_recording(path, layout=layout)
        return rec, iter([rec])
    if not header.strip():
        fh.close()
        raise DataError("the file is empty", file=str(path), fix="check that the recording was exported fully")
    blocks = _csv_blocks(path, fh, header, layout, block_rows)
    try:
        first = next(blocks)
    except StopIteration:
        fh.close()
        raise DataError("the file has a header but no data rows", file=str(path),
                        fix="check that the recording was exported fully") from None
    except DataError:
        fh.close()
        raise
    return first, _closing(chain([first], blocks), fh)


def _closing(blocks, fh):
    try:
        yield from blocks
    finally:
        fh.close()
