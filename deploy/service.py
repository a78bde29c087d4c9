"""What the daemon needs to run as a service: systemd's notify protocol and watchdog (the `Heartbeat` its loop beats:
watchdog, status lines, silence), JSON log lines, and Prometheus metrics on loopback. Standard library only."""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time

from deploy.errors import FogError
from deploy.lazy import lazy_import

# The standard library's HTTP server costs ~2.5 MB of resident memory: loaded only when metrics are asked for.
http_server = lazy_import("http.server", "device", "the metrics endpoint")

log = logging.getLogger("deploy.daemon")


# ------------------------------------------------------------------ systemd

def sd_notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to systemd's notify socket; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


def watchdog_interval_s() -> float | None:
    """Seconds between watchdog pings (half of systemd's WatchdogSec=), None without a watchdog; read before READY,
    so a malformed value stops the start (FogError) instead of the running daemon."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        raise FogError(f"WATCHDOG_USEC={usec!r} is not a positive number of microseconds; systemd sets it from "
                       "WatchdogSec= in the unit file: fix that line (e.g. WatchdogSec=10), or unset WATCHDOG_USEC")
    return value / 1e6 / 2  # ping twice per period, as systemd recommends


class Heartbeat:
    """What the loop reports while it runs: systemd's watchdog, a status line, a warning when the sensor is silent."""

    def __init__(self, config: dict, counters):
        self.counters, self.watchdog_s = counters, watchdog_interval_s()
        self.status_every = float(config["log"]["status_interval_s"] or 0)
        self.silence_s = float(config["stream"]["silence_s"])
        self.started = self.last_data = self.last_status = self.last_wd = time.monotonic()
        self.silent = False

    def data(self, now: float) -> None:
        self.last_data, self.silent = now, False

    def idle(self, now: float) -> None:
        if not self.silent and now - self.last_data > self.silence_s:
            self.silent = True
            self.counters.silences += 1
            c = self.counters
            rejected = "" if c.accepted or not c.received else \
                f"; none of the {c.received} samples received so far was accepted (dropped: {dict(c.dropped)})"
            log.warning("sensor silent for %.1f s%s", now - self.last_data, rejected)

    def tick(self, now: float) -> None:
        if self.watchdog_s and now - self.last_wd >= self.watchdog_s:
            sd_notify("WATCHDOG=1")
            self.last_wd = now
        if self.status_every and now - self.last_status >= self.status_every:
            log.info("status: %s", self.counters.status_line())
            sd_notify("STATUS=" + self.counters.status_line())
            self.last_status = now


# ------------------------------------------------------------------ logs and metrics

class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))


def serve_metrics(counters, port: int, health=None):
    """Prometheus text on http://127.0.0.1:PORT/metrics (loopback only), in a daemon thread; with `health` (an
    object with `health()` and `readiness()`, each -> (status code, JSON text)) also /health and /ready."""
    routes = {"/metrics": lambda: (200, counters.prometheus(), "text/plain; version=0.0.4")}
    if health is not None:
        routes["/health"] = lambda: (*health.health(), "application/json")
        routes["/ready"] = lambda: (*health.readiness(), "application/json")

    class Handler(http_server.BaseHTTPRequestHandler):
        def do_GET(self):
            route = routes.get(self.path.split("?")[0])
            try:
                status, text, kind = route() if route else (404, f"see {', '.join(routes)}\n", "text/plain")
            except Exception:   # a bug in a page never takes the daemon down; it is logged and answered
                log.exception("metrics endpoint %s failed", self.path)
                status, text, kind = 500, "internal error (see the daemon's log)\n", "text/plain"
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    try:
        server = http_server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise FogError(f"log.metrics_port = {port}: cannot serve metrics on 127.0.0.1:{port} ({exc.strerror}); "
                       "another program (or another fog-daemon) listens there: choose a free port with "
                       "--metrics-port, or 0 to turn metrics off") from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://127.0.0.1:%d/metrics", server.server_address[1])
    return server
