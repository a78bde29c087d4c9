"""The local runner: this machine, no service. One worker process per core, each holding one engine (one
onnxruntime thread), takes whole recordings from a queue; memory per worker is bounded by a chunk
(`Settings.chunk_s`), not by a recording's length. `jobs=1` runs in this process.

A model window is a few hundred microseconds of work at batch 1, too small for onnxruntime's intra-op threads to
help, so cores are used across recordings instead. One very long recording therefore runs on one core.
"""
from __future__ import annotations

import os
import queue as queue_mod

_worker = None   # (CohortWorker, progress queue) in a worker process
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init(bundle_dir, settings_dict, progress_queue):
    global _worker
    from toolkit.score.work import CohortWorker, Settings
    _worker = (CohortWorker(bundle_dir, Settings.from_dict(settings_dict)), progress_queue)


def _score(index, source):
    scorer, q = _worker
    result = scorer.try_score(source, progress=(lambda s, length=None: q.put((index, s, length)))
                              if q is not None else None)
    return index, result


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_local(sources, bundle_dir, settings, jobs: int | None = None, progress=None):
    """Yield (index into sources, result dict) as recordings finish. `progress(index, seconds, length_s)` as signal
    is scored (Scorer.score's calls, with the recording's index)."""
    jobs = max(1, min(jobs or default_jobs(), len(sources) or 1))
    if jobs == 1:
        from toolkit.score.work import CohortWorker
        scorer = CohortWorker(bundle_dir, settings)
        try:
            for i, source in enumerate(sources):
                yield i, scorer.try_score(source, progress=(lambda s, length=None, i=i: progress(i, s, length))
                                          if progress else None)
        finally:
            scorer.close()
        return

    import concurrent.futures as cf
    import multiprocessing as mp
    ctx = mp.get_context("spawn")   # no fork of a process with threads (tqdm's monitor, onnxruntime)
    q = ctx.Queue() if progress else None
    # the longest recordings first, so one long file does not start last
    order = sorted(range(len(sources)), key=lambda i: -sources[i].estimate_s())
    with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init,
                                initargs=(str(bundle_dir), settings.to_dict(), q)) as pool:
        # one thread per worker for numpy's BLAS/OpenMP too (Ray does the same): workers = cores. The workers
        # start during these submissions and take the environment as it is then.
        saved = {k: os.environ.get(k) for k in THREAD_VARS}
        os.environ.update({k: "1" for k in THREAD_VARS})
        try:
            pending = {pool.submit(_score, i, sources[i]) for i in order}
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        while pending:
            done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            _drain(q, progress)
            for future in done:
                yield future.result()
        _drain(q, progress)


def _drain(q, progress):
    if q is None:
        return
    while True:
        try:
            progress(*q.get_nowait())
        except queue_mod.Empty:
            return
