"""The manifest's `batching` section: the batch sizes the bundle's graphs come in, for a gateway that runs the windows
of many wearers together (deploy.batching, deploy.gateway).

`toolkit export --batch 1,8,32` writes one static graph per size (onnxruntime runs static graphs fastest here, and a
row of a static batch equals the same window at batch 1 bit for bit: toolkit.export.batches checks it for every size)
and, for TensorRT, the optimization profile its build uses. The first size's graphs are the bundle's `models`; the
others are listed here per model role. A bundle without the section runs at batch 1 only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deploy.contract.section import Section, key
from deploy.errors import BundleError

MAX_BATCH = 1024


@dataclass(frozen=True, kw_only=True)
class BatchingSection(Section):
    """The manifest's `batching`: batch sizes, the graph of each size per model role, how they were checked."""
    KEY: ClassVar[str] = "batching"
    OPTIONAL: ClassVar[tuple] = ("tensorrt",)
    sizes: tuple[int, ...] = key((1,), "static batch sizes, ascending; the first is the bundle's own graphs' "
                                       "(models.*)")
    files: dict = key({}, "{role: {size: file}} for every size but the first (its files are models.<role>)")
    row_exact: bool = key(True, "each row of a batch equals the same window run at the first size, bit for bit "
                                "(checked at export on onnxruntime); false: a gateway runs the first size only")
    verification: dict = key({}, "{size: {rows_equal, max_abs, windows}}: each size against the first")
    tensorrt: dict | None = key(None, "the TensorRT optimization profile of a dynamic-batch graph: {input, min, "
                                      "opt, max} shapes")

    def __post_init__(self):
        sizes = list(self.sizes)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_BATCH for s in sizes) \
                or sizes != sorted(set(sizes)):
            raise BundleError(f"manifest batching.sizes = {sizes!r}: ascending distinct whole numbers in "
                              f"1..{MAX_BATCH}; re-export the bundle (toolkit export --batch 1,8,32)")
        for role, per_size in self.files.items():
            if not isinstance(per_size, dict) or {str(s) for s in sizes[1:]} - set(map(str, per_size)):
                raise BundleError(f"manifest batching.files.{role} = {per_size!r} must name a file for each of "
                                  f"{sizes[1:]}; re-export the bundle")

    def file(self, role: str, size: int) -> str | None:
        """The file of model `role` at batch `size` (None for the first size: the bundle's models.<role>)."""
        if size not in self.sizes:
            raise BundleError(f"the bundle has no graphs at batch {size} (it has {list(self.sizes)}); export them "
                              "with toolkit export --batch, or choose one of those")
        if size == self.sizes[0]:
            return None
        per_size = self.files.get(role)
        if per_size is None:
            raise BundleError(f"the bundle has no {role} graphs at batch {size} (batching.files names "
                              f"{sorted(self.files)}); re-export it with --batch")
        return per_size.get(str(size), per_size.get(size))

    @property
    def usable_sizes(self) -> list[int]:
        """The sizes a gateway may run: all of them when rows are exact, else the first."""
        return list(self.sizes) if self.row_exact else list(self.sizes[:1])
