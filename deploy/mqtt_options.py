"""MQTT as a deployment gives it: the URL, credentials, TLS, the device's topics and client id, the last will.

    mqtt://broker                          port 1883, topic prefix "fog"
    mqtts://user:pass@broker:8883/ward     TLS (system CAs unless ca_file), credentials, prefix "ward"

Topics: `{prefix}/{device_id}/events` (QoS 1), `{prefix}/{device_id}/probs` (QoS 0) and the availability topic
`{prefix}/{device_id}/status`: "online" (retained) once connected, "offline" (retained) on a clean stop, and
"offline" as the last will the broker publishes when the daemon vanishes (SIGKILL, power, network). The device id
is the config's `device_id`, else the host name; the client id `fog-daemon-{device_id}` is stable across restarts.
A password is never logged: labels name host, port and topic only, and errors show URLs with the password hidden.
"""
from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path
from urllib.parse import unquote, urlsplit

from deploy.validate import NOT_IN_TOPIC, ConfigError, topic_level

DEFAULT_PORT = {"mqtt": 1883, "mqtts": 8883}
ONLINE, OFFLINE = "online", "offline"
_USERINFO = re.compile(r"(?<=://)([^/@]*)@")


def redact(text: str) -> str:
    """'mqtt://user:secret@host/t' -> 'mqtt://user:***@host/t' (the password never reaches a log or an error)."""
    return _USERINFO.sub(lambda m: m.group(1).split(":", 1)[0] + (":***@" if ":" in m.group(1) else "@"), text)


def parse_mqtt_url(text: str, probs: bool = False) -> dict:
    """mqtt[s]://[USER[:PASS]@]HOST[:PORT][/TOPIC] -> a sink table (the port defaults to 1883, 8883 with TLS)."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in DEFAULT_PORT or not parts.hostname or port == -1 or parts.query or parts.fragment:
        raise ConfigError(f"--sink {redact(text)!r}: expected mqtt://[USER[:PASSWORD]@]HOST[:PORT][/TOPIC] "
                          "(or mqtts:// for TLS), e.g. mqtt://broker.local/fog")
    sink = {"kind": "mqtt", "host": parts.hostname, "port": DEFAULT_PORT[parts.scheme] if port is None else port,
            "topic": parts.path.strip("/") or "fog", "probs": probs}
    if parts.scheme == "mqtts":
        sink["tls"] = True
    if parts.username:
        sink["username"] = unquote(parts.username)
    if parts.password is not None:
        sink["password"] = unquote(parts.password)
    return sink


def device_id(given: str | None = None) -> str:
    """The configured id, else this host's name made topic-safe ('/', '+', '#', spaces become '-')."""
    if given:
        return topic_level(given, "device_id")
    return NOT_IN_TOPIC.sub("-", socket.gethostname()) or "unknown"


def topics(prefix: str, device: str) -> dict:
    base = f"{prefix.strip('/')}/{device}"
    return {"events": f"{base}/events", "probs": f"{base}/probs", "status": f"{base}/status"}


def client_id(device: str) -> str:
    return f"fog-daemon-{device}"


def read_password(password: str | None, password_file: str | None) -> str | None:
    """The password given inline or the first line of `password_file` (mode 0600, owned by the daemon's user)."""
    if password is not None and password_file:
        raise ConfigError("MQTT sink: give password or password_file, not both")
    if not password_file:
        return password
    try:
        lines = Path(password_file).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"MQTT sink password_file {password_file}: cannot read it ({exc.strerror}); check the path "
                          "and that the daemon's user may read it") from None
    if not lines or not lines[0]:
        raise ConfigError(f"MQTT sink password_file {password_file}: empty; write the password on its first line")
    return lines[0]


def check_tls_files(tls: bool, **files) -> None:
    given = {k: v for k, v in files.items() if v}
    if given and not tls:
        raise ConfigError(f"MQTT sink: {', '.join(sorted(given))} given without TLS; set tls = true or use mqtts://")
    for key, path in given.items():
        if not Path(path).is_file():
            raise ConfigError(f"MQTT sink {key} {path}: no such file")


def configure_client(client, *, status_topic: str, username=None, password=None, tls=False, ca_file=None,
                     cert_file=None, key_file=None) -> None:
    """Credentials, TLS and the retained 'offline' last will, on a paho client before it connects."""
    if username is not None or password is not None:
        client.username_pw_set(username or "", password)
    if tls:
        try:
            client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file)   # ca_file None: system CAs
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"MQTT sink TLS: cannot load ca_file/cert_file/key_file ({exc}); give PEM files "
                              "(cert_file with key_file, or one file holding both)") from None
    client.will_set(status_topic, OFFLINE, qos=1, retain=True)


def connection_problem(host: str, port: int, tls: bool = False, ca_file=None, cert_file=None, key_file=None,
                       timeout_s: float = 3.0) -> str | None:
    """Why a connection to the broker fails, tried once directly (paho's background thread keeps the reason to
    itself): nothing listening, no answer, or a TLS handshake it refuses (an untrusted certificate, a host name it
    is not for, a plain listener); None when the connection and handshake work."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except ConnectionRefusedError:
        return f"nothing listens on {host}:{port} (the broker is down, or another port)"
    except OSError as exc:
        return f"cannot reach {host}:{port} ({exc.strerror or exc})"
    if not tls:
        raw.close()
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
        with context.wrap_socket(raw, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return (f"TLS: the broker's certificate is not trusted ({exc.verify_message}); give the CA that signed it "
                "with ca_file = \"/etc/fog/broker-ca.pem\", and connect by the name the certificate is for")
    except (ssl.SSLError, OSError) as exc:
        return (f"TLS handshake failed ({exc}); is {host}:{port} a TLS listener (usually 8883), and does the broker "
                "accept this client certificate?")
    finally:
        raw.close()
