"""`bench(model, ...) -> BenchResult`: the API behind `toolkit bench` (the full sweep; the regression baseline stays
a command-line job)."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import FogError
from toolkit.api.export import export
from toolkit.api.model import _is_module
from toolkit.bench import report as bench_report
from toolkit.bench import run as bench_run
from toolkit.bench.backends import BACKENDS


@dataclass
class BenchResult:
    report: dict           # the full report (what --json-out writes)

    @property
    def backends(self) -> dict:
        return self.report["backends"]

    def median_ms(self, backend: str) -> float:
        """Batch-1 median latency of a backend, ms."""
        return self.report["backends"][backend]["batch1"]["median_ms"]

    @property
    def realtime_budget_ms(self) -> float | None:
        """One window per hop: the latency a backend must stay under to keep up with one wearer."""
        budget = bench_report.realtime_budget_s(self.report["model"])
        return budget * 1e3 if budget else None

    def table(self) -> str:
        return bench_report.format_table(self.report)

    def plot(self, path) -> Path:
        """The batch-sweep PNG with the real-time budget."""
        return bench_report.plot_sweep(self.report, path)

    def to_json(self) -> str:
        return json.dumps(self.report, indent=2, default=str)


def bench(model, *, backends=None, batches=(1, 4, 16, 64), threads: int = 1, overrides: dict | None = None,
          name: str | None = None, preprocess: dict | None = None, progress: bool = False) -> BenchResult:
    """Time `model` on each backend: a bundle folder, a preset name, or a torch.nn.Module (exported first into a
    temporary cpu bundle, with `preprocess` as for toolkit.api.export)."""
    backends = list(backends or BACKENDS)
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise FogError(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    if threads < 1 or any(int(b) < 1 for b in batches):
        raise FogError("threads and batch sizes must be positive")
    if _is_module(model):
        with tempfile.TemporaryDirectory(prefix="fog-bench-") as tmp:
            exported = export(model, target="cpu", out=Path(tmp) / "bundle", preprocess=preprocess,
                              precision="fp32", fidelity=False, verify_windows=2)
            return bench(exported.out, backends=[b for b in backends if b != "pytorch-eager"], batches=[1],
                         threads=threads, name=name or type(model).__name__, progress=progress)
    benched = bench_run.load_benched(str(model), overrides or {}, name=name)
    return BenchResult(bench_run.run_bench(benched, backends, [int(b) for b in batches], threads=threads,
                                           show_progress=progress))
