"""Progress bars for the workstation's long jobs (train, calibrate, export, evaluate, bench), on tqdm.

One place decides how they look and when they show: on stderr, only when stderr is a terminal (tqdm's
`disable=None`) and the caller did not ask for quiet. Logs and CI output stay clean; the device side (deploy/)
keeps its structured logs and never imports this. The bars live here, not in toolkit/, because calibration's own
loops (`calibration.train.fit`, `calibration.ptq.calibrate`) draw them and calibration may not import toolkit.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

from deploy.errors import MissingDependency
from deploy.lazy import lazy_import, require

tqdm_module = lazy_import("tqdm", "workstation", "progress bars")


class QuietBar:
    """The bar that shows nothing: what `bar` returns off a terminal, with --quiet, or without tqdm, so a job that
    shows no bar never needs tqdm (a bundle is evaluated with the device's packages alone)."""
    disable = True

    def __init__(self, total=None, desc: str = "", **_ignored):
        self.total, self.desc, self.n, self.postfix = total, desc, 0, ""

    def update(self, n=1) -> None:
        self.n += n

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, text: str, file=None) -> None:
        print(text, file=file or sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_said_no_tqdm = []


def _tqdm_or_none():
    """tqdm, or None (said once: the bars are left out, nothing else changes)."""
    try:
        return require(tqdm_module)
    except MissingDependency as missing:
        reason = missing
    if not _said_no_tqdm:
        _said_no_tqdm.append(True)
        print(f"note: no progress bars: {reason}", file=sys.stderr)
    return None


def bar(total: int | float | None, desc: str, unit: str = "it", enabled: bool = True, **kw):
    """A tqdm bar with a total (so it shows rate and ETA), on stderr; a QuietBar when not enabled, not on a terminal
    or without tqdm."""
    tty = getattr(sys.stderr, "isatty", lambda: False)()
    tqdm = _tqdm_or_none() if enabled and tty else None
    if tqdm is None:
        return QuietBar(total, desc)
    return tqdm.tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=None, **kw)


def write(text: str, enabled: bool = True) -> None:
    """A log line that does not break a bar on screen (tqdm.write); printed even when bars are hidden (not a TTY)."""
    if enabled:
        try:
            require(tqdm_module).tqdm.write(text, file=sys.stderr)
        except MissingDependency:
            print(text, file=sys.stderr)


@contextmanager
def ticking(progress_bar, every_s: float = 1.0):
    """Refresh `progress_bar` every `every_s` seconds while the block runs, so a long step with no updates of its own
    (an export of the large preset: minutes inside torch.onnx) still shows its elapsed time ticking."""
    if progress_bar.disable:
        yield progress_bar
        return
    stop = threading.Event()

    def tick():
        while not stop.wait(every_s):
            progress_bar.refresh()
    thread = threading.Thread(target=tick, name="progress-tick", daemon=True)
    thread.start()
    try:
        yield progress_bar
    finally:
        stop.set()
        thread.join()


class StepBar:
    """A bar over the named steps of one job (`[export] 3/7 verification ...`): one tick per finished step, the
    current step's name as the description, its elapsed time ticking while it runs."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.bar = bar(total, desc, unit="step", enabled=enabled,
                       bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {elapsed}<{remaining}{postfix}")
        self.desc, self._t0, self._tick = desc, None, None
        self.log_lines = not self.bar.disable

    def start(self, what: str) -> None:
        self._t0 = time.perf_counter()
        self.bar.set_postfix_str(what, refresh=True)
        self._tick = ticking(self.bar)
        self._tick.__enter__()

    def done(self, detail: str = "") -> float:
        seconds = time.perf_counter() - self._t0
        if self._tick is not None:
            self._tick.__exit__(None, None, None)
            self._tick = None
        what = getattr(self.bar, "postfix", None) or ""
        if self.log_lines:
            self.bar.write(f"[{self.desc} {self.bar.n + 1}/{self.bar.total}] {what}: "
                           f"{detail + ', ' if detail else ''}{seconds:.1f} s", file=sys.stderr)
        self.bar.update(1)
        return seconds

    def close(self) -> None:
        if self._tick is not None:
            self._tick.__exit__(None, None, None)
            self._tick = None
        self.bar.close()
