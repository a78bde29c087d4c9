"""What the daemon needs to run as a service: systemd's notify protocol and watchdog, JSON log lines, and
Prometheus metrics on loopback. Standard library only."""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading

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
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2  # ping twice per period, as systemd recommends


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

    server = http_server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://127.0.0.1:%d/metrics", server.server_address[1])
    return server
