"""`--runner ray`: the same per-recording work (`toolkit.score.work.CohortWorker`) on Ray Data.

The plan: a dataset of recordings (one row each: path and owner) -> `map_batches` into an actor pool, each actor
holding one engine (one CPU, one onnxruntime thread), one recording per call; each actor reads its recording in
chunks itself (a recording is one sequential signal: its samples cannot be scattered across workers without
changing the grid) -> results (events, not-worn stretches; a few KB per recording) stream back to the driver, which
writes the same tables as the local runner. Ray runs locally (`address=None`: a private instance with `num_cpus`) or
joins a cluster (`address="auto"` or `ray://host:10001`).

On a cluster the recordings' paths must be readable from every node (shared file system); the bundle is shipped
to the actors with the job (its files are small), and verified there before use. Each node needs this package
installed (`pip install fog-edge-toolkit[ray]`), or `runtime_env={"py_modules": [...]}`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from deploy.errors import MissingDependency


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependency("ray[data]", "ray", "scoring on Ray (--runner ray)") from None
    return ray


def _bundle_bytes(bundle_dir) -> dict[str, bytes]:
    folder = Path(bundle_dir)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.relative_to(folder).as_posix().startswith("cache/")}


class ScoreActor:
    """One engine per actor: the bundle is written to a private folder, verified, and opened once."""

    def __init__(self, bundle_files: dict, settings: dict):
        import tempfile

        from toolkit.score.work import CohortWorker, Settings
        self.folder = Path(tempfile.mkdtemp(prefix="fog-bundle-"))
        for rel, data in bundle_files.items():
            path = self.folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.worker = CohortWorker(self.folder, Settings.from_dict(settings))

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from toolkit.score.read import RecordingFile
        out = []
        for index, source_json in zip(batch["index"], batch["source"]):
            d = json.loads(source_json)
            d["path"] = Path(d["path"])
            source = RecordingFile(**d)
            out.append(json.dumps(self.worker.try_score(source)))
        return {"index": np.asarray(batch["index"]), "result": np.asarray(out, dtype=object)}


def _source_json(source) -> str:
    return json.dumps({"path": str(source.path), "subject": source.subject, "visit": source.visit,
                       "start_of_day_s": source.start_of_day_s, "rate_hz": source.rate_hz, "units": source.units,
                       "n_samples": source.n_samples, "label": source.label, "subject_from": source.subject_from})


def run_ray(sources, bundle_dir, settings, address: str | None = None, num_cpus: int | None = None,
            actors: int | None = None):
    """Yield (index into sources, result dict) as recordings finish on Ray (the driver's bar counts each recording
    when its result arrives)."""
    ray = _ray()
    started_here = False
    if not ray.is_initialized():
        # a private instance keeps its object store small: only a few KB per recording travel through it
        kw = {"address": address} if address else {"num_cpus": num_cpus, "object_store_memory": 256 << 20}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, **kw)
        started_here = True
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False       # our own bar (recordings and hours) is shown instead
        ctx.verbose_stats_logs = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_actors = max(1, min(actors or cpus, len(sources)))
        # longest first, so one long recording does not start last
        order = sorted(range(len(sources)), key=lambda i: -sources[i].estimate_s())
        items = [{"index": i, "source": _source_json(sources[i])} for i in order]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(ScoreActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=1,
                            fn_constructor_kwargs={"bundle_files": _bundle_bytes(bundle_dir),
                                                   "settings": settings.to_dict()})
        for row in ds.iter_rows():
            yield int(row["index"]), json.loads(row["result"])
    finally:
        if started_here:
            ray.shutdown()
