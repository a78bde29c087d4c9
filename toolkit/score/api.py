"""`score_cohort(paths, bundle, runner=...)`: a cohort's recordings through a bundle, as the daemon scores them.

    from toolkit.score import score_cohort
    result = score_cohort(["data/unlabeled"], "bundles/fog-small", out="runs/cohort")      # this machine
    result = score_cohort(paths, bundle, runner="ray", address="auto", out="runs/cohort")  # a Ray cluster
    result.summary        # rows: subject, visit, day, hours_recorded, hours_not_worn, fog_minutes, episodes, ...
    result.events         # rows: recording, subject, class, onset_s, offset_s, duration_s, peak, ...

Resumable: with `out`, each recording's result is kept in `out/parts/` under the sha256 of the file's bytes and a
signature of the bundle's files and the settings; a second run skips what is already there (a changed file, bundle
or setting is scored again). Outputs are the same whichever runner ran them, and whatever was resumed.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from calibration import progress
from deploy.bundle import sha256_file
from deploy.errors import FogError
from toolkit.score.worn import WornSettings
from toolkit.score.work import Settings, bundle_signature

RUNNERS = ("local", "ray")   # where the recordings are scored: this machine's processes, or Ray Data


@dataclass
class ScoreResult:
    recordings: list[dict]                 # per-recording results (events, not-worn stretches, timing)
    events: list[dict]
    summary: list[dict]
    files: dict[str, Path] = field(default_factory=dict)
    scored: int = 0                        # recordings scored in this run
    resumed: int = 0                       # recordings taken from out/parts
    wall_s: float = 0.0                    # this run's scoring time (excludes resumed recordings)
    hours_scored: float = 0.0              # hours of signal scored in this run
    errors: list[dict] = field(default_factory=list)   # recordings that could not be scored: name, path, error
    warnings: list[str] = field(default_factory=list)  # outputs not written (a package missing) and why

    @property
    def hours_per_second(self) -> float:
        return self.hours_scored / self.wall_s if self.wall_s > 0 else float("nan")


class _Progress:
    """The cohort's bar (calibration.progress, like every long job's): hours of signal with ETA, recordings done.

    The total starts as the sum of each recording's estimated length (Source.estimate_s, from the file size for
    text) and becomes exact recording by recording: a worker says a recording's length as soon as it has opened it,
    before its first chunk, and a finished (or failed) recording counts as what was scored of it. So the bar never
    passes 100 % and its ETA never goes negative, however wrong an estimate was (Daphnet's 64 Hz text files are
    1.6x longer than a 100 Hz CSV of the same size)."""

    def __init__(self, estimates: list[float], enabled: bool):
        self.estimate, self.length, self.scored = list(estimates), [None] * len(estimates), [0.0] * len(estimates)
        self.count, self.done, self.finished = len(estimates), 0, set()
        self.bar = progress.bar(round(self.total_s / 3600, 4), "score", unit="h",
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} h of signal "
                                           "[{elapsed}<{remaining}, {rate_fmt}] {postfix}") if enabled else None

    @property
    def total_s(self) -> float:
        return sum(e if n is None else n for e, n in zip(self.estimate, self.length))

    @property
    def scored_s(self) -> float:
        return sum(self.scored)

    def signal(self, k: int, seconds: float, length_s: float | None = None) -> None:
        """Recording k: `seconds` more scored; its exact length when known."""
        if k in self.finished:       # a worker's last message, drained after its result: already counted
            return
        if length_s is not None:
            self.length[k] = length_s
        self.scored[k] += seconds
        self._show()

    def recording(self, k: int, name: str, duration_s: float | None = None) -> None:
        """Recording k finished: all of its `duration_s` scored (None: it failed, what was scored is all it was)."""
        self.length[k] = self.scored[k] = self.scored[k] if duration_s is None else duration_s
        self.finished.add(k)
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.done}/{self.count} recordings ({name})", refresh=False)
        self._show()

    def _show(self) -> None:
        if self.bar is None:
            return
        total_h, scored_h = self.total_s / 3600, self.scored_s / 3600
        self.bar.total = round(max(total_h, scored_h), 4)
        self.bar.update(min(scored_h, self.bar.total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _checked_signature(bundle_dir: Path, settings: Settings) -> str:
    """The bundle verified, the precision asked for refused if that graph would not run (before any worker
    starts: deploy.engines.check_precision), and the signature of bundle and settings every cache key carries."""
    from deploy.bundle import Bundle
    from deploy.engines import check_precision
    loaded = Bundle.load(bundle_dir, verify=True)
    check_precision(loaded, settings.backend, settings.precision)
    return bundle_signature(loaded, settings)


def _resumed(recordings, parts, signature: str, resume: bool) -> tuple[list, dict, list]:
    """(results so far: those kept in `parts` for the same bytes, bundle and settings; {path: sha256 of its bytes};
    the indices still to score)."""
    results: list[dict | None] = [None] * len(recordings)
    hashes, todo = {}, []
    for i, recording in enumerate(recordings):
        if parts is not None:
            hashes[str(recording.path)] = digest = sha256_file(recording.path)
            cached = parts / f"{digest}-{signature}.json"
            if resume and cached.is_file():
                stored = json.loads(cached.read_text())
                # the same bytes under another name or owner: keep the scores, take the current identity
                stored.update(name=recording.name, path=str(recording.path), subject=recording.subject,
                              visit=recording.visit, subject_from=recording.subject_from,
                              start_of_day_s=recording.start_of_day_s)
                results[i] = stored
                continue
        todo.append(i)
    return results, hashes, todo


def _keep(parts: Path, digest: str, signature: str, result: dict) -> None:
    """One recording's result in `parts`, written whole or not at all (a resumed run never reads half a file)."""
    parts.mkdir(parents=True, exist_ok=True)
    tmp = parts / f".{digest}.tmp"
    tmp.write_text(json.dumps(result))
    tmp.replace(parts / f"{digest}-{signature}.json")


def _run(recordings, bundle_dir, settings: Settings, runner: str, bar: _Progress, options: dict):
    """(index into `recordings`, result) as `runner` finishes them."""
    if runner == "local":
        from toolkit.score.local import run_local
        return run_local(recordings, bundle_dir, settings, progress=bar.signal, **options)
    from toolkit.score.ray_runner import run_ray
    return run_ray(recordings, bundle_dir, settings, **options)      # the bar counts each result as it arrives


def score_cohort(paths, bundle, runner: str = "local", out=None, *, jobs: int | None = None,
                 address: str | None = None, actors: int | None = None, metadata=None, backend: str = "onnxruntime",
                 precision: str | None = None, hop_s: float | None = None, lookahead_s=None,
                 events: dict | None = None, worn: WornSettings | dict | None = None, chunk_s: float = 600.0,
                 resume: bool = True, progress: bool = False) -> ScoreResult:
    """Score every recording under `paths` with the bundle at `bundle` (see the module docstring).

    runner "local": this machine (`jobs` worker processes, default one per core); "ray": Ray Data (`address` of a
    cluster, default a private local instance with `jobs` CPUs; `actors` engines, default one per CPU).
    hop_s/lookahead_s/events override the bundle's settings as the daemon's flags do; `worn` tunes or (min_s=0)
    turns off not-worn detection; `chunk_s` bounds memory (seconds of signal read at once; results do not depend
    on it)."""
    from toolkit.score import report
    from toolkit.score.read import find_recording_files

    if runner not in RUNNERS:
        raise FogError(f"runner {runner!r} is not one of {RUNNERS}")
    if chunk_s <= 0:
        raise FogError("chunk_s must be positive")
    worn = worn if isinstance(worn, WornSettings) else WornSettings(**(worn or {}))
    settings = Settings(backend=backend, precision=precision, hop_s=hop_s, lookahead_s=lookahead_s,
                        events=dict(events or {}), worn=worn, chunk_s=chunk_s)
    bundle_dir = Path(bundle)
    signature = _checked_signature(bundle_dir, settings)
    recordings = find_recording_files(paths if isinstance(paths, (list, tuple)) else [paths], metadata)

    out = Path(out) if out is not None else None
    parts = out / "parts" if out is not None else None
    results, hashes, todo = _resumed(recordings, parts, signature, resume)
    bar = _Progress([recordings[i].estimate_s() for i in todo], progress and bool(todo))
    started = time.perf_counter()
    hours, errors = 0.0, []
    try:
        stream = _run([recordings[i] for i in todo], bundle_dir, settings, runner, bar,
                      dict(jobs=jobs) if runner == "local" else dict(address=address, num_cpus=jobs, actors=actors))
        for k, result in stream:
            bar.recording(k, result["name"], result.get("duration_s"))
            if "error" in result:
                errors.append({key: result[key] for key in ("name", "path", "error")})
                continue
            results[todo[k]] = result
            hours += result["duration_s"] / 3600
            if parts is not None:
                _keep(parts, hashes[str(recordings[todo[k]].path)], signature, result)
    finally:
        bar.close()
    wall = time.perf_counter() - started

    done = [r for r in results if r is not None]
    warnings: list[str] = []
    files = report.write_outputs(out, done, hashes, errors, warnings) if out is not None else {}
    if out is not None:
        (out / "run.json").write_text(json.dumps({
            "bundle": str(bundle_dir), "signature": signature, "runner": runner, "settings": settings.to_dict(),
            "recordings": len(done), "scored": len(todo) - len(errors), "resumed": len(done) - len(todo) + len(errors),
            "failed": len(errors), "wall_s": wall,
            "hours_scored": hours, "hours_per_second": hours / wall if wall > 0 else None}, indent=2) + "\n")
    return ScoreResult(recordings=done, events=report.event_rows(done), summary=report.summary_rows(done),
                       files=files, scored=len(todo) - len(errors), resumed=len(done) - len(todo) + len(errors),
                       wall_s=wall, hours_scored=hours, errors=errors, warnings=warnings)
