"""Open episodes survive a SIGKILL: a small state file lists every onset sent whose episode has not ended yet.

An `onset` message tells a cueing device that a freeze is going on; its `event` message ends it. A daemon killed in
between (SIGKILL, power loss) never sends that end, and a consumer could cue forever. With `stream.state_file` set,
the daemon records each onset there (atomically: written to a temporary file, then renamed) and removes it with
its event; at the next start every onset still listed is closed explicitly with an `aborted` message (`offset_s`
null, `reason` saying why) before anything else is sent, and counted (`aborted_onsets`). A normal stop ends every
episode, so the file is then empty.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from deploy.errors import FogError

log = logging.getLogger("deploy.onsets")

REASON = "the daemon stopped without ending this episode (killed or power lost); its end is unknown"


class OpenOnsets:
    def __init__(self, path):
        self.path = Path(path)
        self.open: dict[str, dict] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FogError(f"stream.state_file {self.path}: cannot create its folder ({exc.strerror}); choose a "
                           "writable place, e.g. /var/lib/fog-daemon/open_onsets.json") from None

    def leftover(self) -> list[dict]:
        """Onsets a previous run sent and never ended, as `aborted` messages (the file is then cleared)."""
        if not self.path.is_file():
            return []
        try:
            listed = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("state file %s unreadable (%s): open onsets of the previous run are unknown", self.path, exc)
            listed = {}
        if not isinstance(listed, dict):   # not written by this daemon (a list, a number): said, then replaced
            log.warning("state file %s holds a JSON %s, not the daemon's table of open onsets: open onsets of the "
                        "previous run are unknown; it is replaced now (point stream.state_file at a file of its own)",
                        self.path, type(listed).__name__)
            listed = {}
        self._write()
        return [{**onset, "type": "aborted", "offset_s": None, "reason": REASON, "wall_time": round(time.time(), 3)}
                for onset in listed.values() if isinstance(onset, dict)]

    def update(self, kind: str, message: dict) -> None:
        """Call with every onset and event message, before it is sent (a gateway's carry their wearer, `device`:
        the open onsets are then kept per wearer and class)."""
        key = f"{message['device']}/{message['class']}" if "device" in message else message["class"]
        if kind == "onset":
            self.open[key] = {k: message[k] for k in ("device", "class", "onset_s", "detect_s", "decided_s")
                              if k in message}
        elif kind == "event" and self.open.pop(key, None) is None:
            return
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.open))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("state file %s not written (%s)", self.path, exc)
