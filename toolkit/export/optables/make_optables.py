"""Derive the project's op-support tables (`trt*.json` beside this file) from the ONNX-TensorRT operator matrices.

The JSON files are the project's own data and are committed; this script documents where they came from and can
regenerate them when a new matrix is added. Input: the verbatim `docs/operators.md` copies kept in
`../shared/reference/onnx-tensorrt-operators-trt<VERSION>.md`. Run:

    python toolkit/export/optables/make_optables.py [REFERENCE_DIR]
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_REFERENCE = HERE.parents[3] / "shared" / "reference"

# "TensorRT 8.5 supports operators up to Opset 17" / "... in the inclusive range of opset 9 to opset 20"
_RANGE = re.compile(r"opset (\d+) to opset (\d+)", re.I)
_UP_TO = re.compile(r"up to opset (\d+)", re.I)
_SOURCE = re.compile(r"<!--\s*Source:\s*(.*?)-->", re.S)


def parse_matrix(text: str) -> dict:
    """Header facts and one entry per operator row of an operators.md matrix."""
    if m := _RANGE.search(text):
        opset_min, opset_max = int(m.group(1)), int(m.group(2))
    elif m := _UP_TO.search(text):
        opset_min, opset_max = 1, int(m.group(1))
    else:
        raise ValueError("no opset range in the matrix header")
    ops = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[1] not in ("Y", "N"):
            continue  # header, separator, prose
        name = cells[0]
        types = [t.strip() for t in cells[2].split(",") if t.strip()] if len(cells) > 2 else []
        restrictions = cells[3] if len(cells) > 3 else ""
        ops[name] = {"supported": cells[1] == "Y", "types": types, "restrictions": restrictions}
    source = _SOURCE.search(text)
    return {"opset_min": opset_min, "opset_max": opset_max,
            "source": " ".join(source.group(1).split()) if source else "", "ops": dict(sorted(ops.items()))}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    reference = Path(argv[0]) if argv else DEFAULT_REFERENCE
    matrices = sorted(reference.glob("onnx-tensorrt-operators-trt*.md"))
    if not matrices:
        print(f"no onnx-tensorrt-operators-trt*.md under {reference}", file=sys.stderr)
        return 1
    for md in matrices:
        version = md.stem.rsplit("trt", 1)[1]
        table = {"tensorrt_table": version, **parse_matrix(md.read_text())}
        out = HERE / f"trt{version}.json"
        out.write_text(json.dumps(table, indent=1) + "\n")
        print(f"{out.name}: {len(table['ops'])} operators, opset {table['opset_min']}..{table['opset_max']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
