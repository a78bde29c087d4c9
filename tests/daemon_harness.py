"""fog-daemon in a test, as a user runs it: a subprocess, started, awaited by reading what it says (READY is the log
line "fog-daemon ready", never a sleep), stopped by a signal or the end of its input, its output collected with the
final counters. The one harness of the daemon tests.

    with Daemon([bundle, "--stdin"]) as d:
        d.wait_ready()
        d.send(lines)
        d.wait_for('"type":"onset"', stream="stdout")
        done = d.stop(signal.SIGTERM)
    assert done.returncode == 0 and done.counters["balanced"]

Timeouts here only bound how long a broken daemon can hang a test; nothing is asserted about how fast it runs.
"""
from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READY = "fog-daemon ready"


def daemon_env(**extra) -> dict:
    """The environment a daemon of this checkout runs in (its code first on the path, no systemd socket)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):   # a test's daemon is not systemd's
        env.pop(key, None)
    env.update(extra)
    return env


def final_counters(stderr: str) -> dict:
    """The counters the daemon prints as its last JSON log line."""
    return json.loads([line for line in stderr.splitlines() if line.startswith('{"counters"')][-1])["counters"]


def wait_until(condition, timeout: float = 10.0, what: str = "the condition") -> None:
    """Return as soon as `condition()` is true (checked every 10 ms); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.01)


class Taken:
    """Samples a source's Feed put into `inbox`, counted as they are taken out (`taken()`: the total so far)."""

    def __init__(self, inbox):
        self.inbox, self.received = inbox, 0

    def __call__(self) -> int:
        while not self.inbox.empty():
            self.received += getattr(self.inbox.get(), "received", 0)
        return self.received


def run_daemon(args, env=None, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the daemon to its end (a replay, stdin's end, a refusal at start)."""
    return subprocess.run([sys.executable, "-m", "deploy", *map(str, args)], env=env or daemon_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, input=input)


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    @property
    def counters(self) -> dict:
        return final_counters(self.stderr)


class Daemon:
    """A running daemon. `stdout`: "pipe" (collected), "closed" (nobody reads: the read end closed at once) or
    "null"; its stderr is always collected. Lines are read on threads as they come, so a pipe never fills."""

    def __init__(self, args, env=None, stdin: bool = True, stdout: str = "pipe"):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploy", *map(str, args)], env=env or daemon_env(), cwd=REPO, text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdout == "null" else subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        if stdout == "closed":
            self.proc.stdout.close()
        self._readers = [self._read(name) for name in ("stdout", "stderr")
                         if name == "stderr" or stdout == "pipe"]

    def _read(self, name: str) -> threading.Thread:
        def pump(stream=getattr(self.proc, name), kept=self.lines[name]):
            for line in stream:
                with self._changed:
                    kept.append(line)
                    self._changed.notify_all()
            with self._changed:
                self._changed.notify_all()
        thread = threading.Thread(target=pump, name=f"daemon-{name}", daemon=True)
        thread.start()
        return thread

    def text(self, stream: str = "stderr") -> str:
        with self._changed:
            return "".join(self.lines[stream])

    def wait_for(self, wanted, stream: str = "stderr", timeout: float = 30.0) -> str:
        """The first line of `stream` containing `wanted` (a string) or for which `wanted(line)` is true, waiting for
        the daemon to write it. Fails, showing what it wrote, when it exits first or after `timeout` seconds."""
        match = wanted if callable(wanted) else (lambda line: wanted in line)
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = 0
            while True:
                kept = self.lines[stream]
                for line in kept[seen:]:
                    if match(line):
                        return line
                seen = len(kept)
                ended = not any(reader.is_alive() for reader in self._readers)   # its output is closed
                remaining = deadline - time.monotonic()
                if ended or remaining <= 0:
                    break
                self._changed.wait(remaining)
        raise AssertionError(f"the daemon did not write {wanted!r} to {stream} "
                             f"({'its output ended' if ended else f'within {timeout:g} s'}):\n"
                             + self.text("stderr")[-3000:])

    def wait_ready(self, timeout: float = 30.0) -> str:
        """The ready line (the daemon has its bundle, engine, source and sinks)."""
        return self.wait_for(READY, timeout=timeout)

    def send(self, text: str) -> None:
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        self.proc.stdin.close()

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float = 30.0) -> Finished:
        """Wait for the daemon to end by itself; its output and exit code."""
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout)
        return Finished(self.proc.returncode, self.text("stdout"), self.text("stderr"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> Finished:
        """Send `sig` (SIGKILL: killed, no drain) and wait for the end."""
        if self.running:
            self.proc.send_signal(sig)
        return self.finish(timeout)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:   # a pipe the daemon left broken
                    pass


# ------------------------------------------------------------------ a real MQTT broker on loopback

def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


class Broker:
    """mosquitto on 127.0.0.1:`port`, configured in `folder`. `persistence`: sessions (and the events queued for them)
    survive a restart; `extra`: more lines for its config (a password file, TLS, a log file)."""

    def __init__(self, folder, port: int | None = None, *, persistence: bool = False, anonymous: bool = True,
                 extra: str = ""):
        self.port, self.conf, self.proc = port or free_port(), Path(folder) / "mosquitto.conf", None
        # `user`: mosquitto started as root would switch to the user 'mosquitto', who cannot write `folder`
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous {str(anonymous).lower()}\n"
                             f"persistence {str(persistence).lower()}\npersistence_location {folder}/\n"
                             f"user {getpass.getuser()}\n" + extra)

    def start(self) -> "Broker":
        """Start it and return once it accepts connections."""
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_until(listening, what=f"mosquitto listening on {self.port}")
        return self

    def stop(self, hard: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill() if hard else self.proc.terminate()
            self.proc.wait(timeout=5)
