"""MQTT as deployments use it (issue 13): default port, credentials from the URL or a password file (never logged),
a device id in the topics, a retained availability topic with an "offline" last will, a stable client id, TLS.
The broker tests run a real mosquitto on loopback (skipped when it is not installed)."""
from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import shutil
import signal
import subprocess
import threading
import time

import pytest

from deploy.config import parse_sink
from deploy.errors import FogError
from tests.daemon_harness import Broker, Daemon, final_counters, free_port, mosquitto_binary

mqtt = pytest.importorskip("paho.mqtt.client")
SECRET = "s3cret-pa55"


# ------------------------------------------------------------------ the URL and the options, no broker

def test_url_default_port_credentials_and_tls():
    assert parse_sink("mqtt://broker.local") == {"kind": "mqtt", "host": "broker.local", "port": 1883,
                                                 "topic": "fog", "probs": False}
    assert parse_sink("mqtt://fog:p%40ss@10.0.0.2:1884/ward/3?probs") == {
        "kind": "mqtt", "host": "10.0.0.2", "port": 1884, "topic": "ward/3", "probs": True, "username": "fog",
        "password": "p@ss"}
    tls = parse_sink("mqtts://broker.local/fog")
    assert tls["tls"] is True and tls["port"] == 8883


@pytest.mark.parametrize("url", [f"mqtt://fog:{SECRET}@host:notaport/fog", f"mqtt://fog:{SECRET}@/fog",
                                 f"mqtp://fog:{SECRET}@host"])
def test_a_bad_url_is_refused_without_showing_the_password(url):
    with pytest.raises(FogError) as info:
        parse_sink(url)
    assert SECRET not in str(info.value) and "fog:***@" in str(info.value)


def test_a_password_of_the_wrong_type_is_refused_without_its_value(tmp_path):
    from deploy.config import build_config
    config = tmp_path / "d.toml"
    config.write_text('bundle = "b"\n[[sinks]]\nkind = "mqtt"\nusername = "fog"\npassword = 912345\n')
    with pytest.raises(FogError, match="expected a string") as info:
        build_config(config)
    assert "912345" not in str(info.value)


def test_device_id_must_be_one_topic_level(tmp_path):
    from deploy.config import build_config
    with pytest.raises(FogError, match="one level of the MQTT topic"):
        build_config(None, [{"bundle": "b", "device_id": "ward/3"}])


def _spy(monkeypatch, calls: dict, method: str) -> None:
    """Record the arguments of paho's Client.<method>, then run it."""
    original = getattr(mqtt.Client, method)

    def spy(self, *args, **kwargs):
        calls.setdefault(method, []).append((args, kwargs))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(mqtt.Client, method, spy)


def _unconnected_sink(monkeypatch, calls, **options):
    """An MqttSink towards a port nobody listens on (connect_timeout_s 0): what it configured on the paho client."""
    from deploy.sinks import MqttSink
    for method in ("tls_set", "username_pw_set", "will_set"):
        _spy(monkeypatch, calls, method)
    return MqttSink(host="127.0.0.1", port=free_port(), connect_timeout_s=0, **options)


def test_mqtts_configures_tls_with_the_given_ca_and_credentials_from_a_file(monkeypatch, tmp_path):
    ca, secret_file = tmp_path / "ca.pem", tmp_path / "mqtt.pass"
    ca.write_text(_self_signed(tmp_path)[0].read_text())
    secret_file.write_text(SECRET + "\n")
    calls: dict = {}
    sink = _unconnected_sink(monkeypatch, calls, tls=True, ca_file=str(ca), username="fog",
                             password_file=str(secret_file), device_id="bed12")
    try:
        assert calls["tls_set"] == [((), {"ca_certs": str(ca), "certfile": None, "keyfile": None})]
        assert calls["username_pw_set"] == [(("fog", SECRET), {})]
        assert calls["will_set"] == [(("fog/bed12/status", "offline"), {"qos": 1, "retain": True})]
        assert sink.topics["events"] == "fog/bed12/events" and SECRET not in sink.label
    finally:
        sink.close(timeout_s=0)


def test_tls_files_without_tls_bad_pem_and_two_passwords_are_refused(tmp_path):
    from deploy.sinks import MqttSink
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(FogError, match="set tls = true or use mqtts://"):
        MqttSink(ca_file=str(tmp_path / "ca.pem"), connect_timeout_s=0)
    with pytest.raises(FogError, match="cannot load ca_file"):
        MqttSink(tls=True, ca_file=str(tmp_path / "ca.pem"), connect_timeout_s=0)   # not PEM
    with pytest.raises(FogError, match="password or password_file, not both"):
        MqttSink(password="a", password_file=str(tmp_path / "ca.pem"), connect_timeout_s=0)


# ------------------------------------------------------------------ a real broker

def _broker(tmp_path, extra: str = "", anonymous: bool = True) -> Broker:
    """mosquitto on loopback, logging to tmp_path/broker.log, with `extra` lines for its listener."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto)")
    return Broker(tmp_path, anonymous=anonymous, extra=f"log_dest file {tmp_path}/broker.log\n" + extra).start()


def _password_broker(tmp_path) -> Broker:
    """A broker that admits only user "fog" with SECRET (a password file made by mosquitto_passwd)."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install -y mosquitto)")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "fog", SECRET], check=True, capture_output=True)
    return _broker(tmp_path, f"password_file {passwd}\n", anonymous=False)


class Watcher:
    """A subscriber (with the broker's credentials) that keeps (topic, payload, retained) in order."""

    def __init__(self, port, topic, **tls):
        self.seen, self.lock = [], threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{time.monotonic_ns()}")
        self.client.username_pw_set("fog", SECRET)
        if tls:
            self.client.tls_set(**tls)
        self.client.on_message = lambda c, u, m: self._keep(m)
        self.client.connect("localhost" if tls else "127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _keep(self, m):
        with self.lock:
            self.seen.append((m.topic, m.payload.decode(), bool(m.retain)))

    def wait(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if any(predicate(item) for item in self.seen):
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def _start_daemon(tmp_path, args) -> tuple[Daemon, str]:
    from tests.helpers_bundle import make_bundle
    bundle = make_bundle(tmp_path / "bundle")
    d = Daemon([bundle, "--stdin", "--log-level", "debug", "--status-interval", "0", *args])
    d.wait_ready()
    return d, d.text()


def test_credentials_from_the_url_online_retained_and_the_last_will_after_sigkill(tmp_path):
    """Password broker; the daemon's URL carries the credentials. Its retained "online" reaches a subscriber that
    comes later; after SIGKILL the broker publishes the "offline" will; the password is in no log line."""
    broker = _password_broker(tmp_path)
    watcher = d = None
    try:
        d, ready = _start_daemon(tmp_path, ["--device-id", "bed12", "--sink",
                                            f"mqtt://fog:{SECRET}@127.0.0.1:{broker.port}/ward3"])
        assert f"mqtt:127.0.0.1:{broker.port}/ward3/bed12" in ready and SECRET not in ready
        watcher = Watcher(broker.port, "ward3/bed12/status")
        assert watcher.wait(lambda m: m == ("ward3/bed12/status", "online", True)), watcher.seen
        killed = d.stop(signal.SIGKILL)
        assert watcher.wait(lambda m: m[1] == "offline"), watcher.seen          # the last will
        late = Watcher(broker.port, "ward3/bed12/status")
        assert late.wait(lambda m: m == ("ward3/bed12/status", "offline", True)), late.seen   # retained
        late.close()
        assert SECRET not in killed.stderr
    finally:
        if d is not None:
            d.__exit__()
        if watcher:
            watcher.close()
        broker.stop(hard=True)
    assert "as fog-daemon-bed12" in (tmp_path / "broker.log").read_text()     # the stable client id


def test_password_file_clean_stop_says_offline_retained(tmp_path):
    broker = _password_broker(tmp_path)
    (tmp_path / "mqtt.pass").write_text(SECRET + "\n")
    config = tmp_path / "d.toml"
    config.write_text(f'device_id = "bed7"\n[[sinks]]\nkind = "mqtt"\nhost = "127.0.0.1"\nport = {broker.port}\n'
                      f'username = "fog"\npassword_file = "{tmp_path / "mqtt.pass"}"\n')
    watcher = Watcher(broker.port, "fog/bed7/#")
    try:
        d, _ = _start_daemon(tmp_path, ["--config", str(config)])
        with d:
            assert watcher.wait(lambda m: m == ("fog/bed7/status", "online", False))
            d.send("".join(f"{i / 64:.6f},1.0,0.0,0.0\n" for i in range(64 * 3)))
            done = d.stop(signal.SIGTERM)
        stderr = done.stderr
        assert watcher.wait(lambda m: m == ("fog/bed7/status", "offline", False))
        late = Watcher(broker.port, "fog/bed7/status")
        assert late.wait(lambda m: m == ("fog/bed7/status", "offline", True))
        late.close()
    finally:
        watcher.close()
        broker.stop(hard=True)
    assert done.returncode == 0 and final_counters(stderr)["sink_failures"] == {}, stderr[-2000:]
    assert SECRET not in stderr


def test_a_wrong_password_is_said_and_not_shown(tmp_path, caplog):
    from deploy.sinks import MqttSink
    broker = _password_broker(tmp_path)
    try:
        with caplog.at_level(logging.DEBUG, logger="deploy.sinks"):
            sink = MqttSink(host="127.0.0.1", port=broker.port, username="fog", password="wrong-" + SECRET,
                            device_id="bed9", connect_timeout_s=1.0)
            deadline = time.monotonic() + 5
            while "refused" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            sink.close(timeout_s=0)
    finally:
        broker.stop(hard=True)
    assert "refused the connection" in caplog.text and "Not authorized" in caplog.text
    assert SECRET not in caplog.text


# ------------------------------------------------------------------ TLS with a certificate made here

def _self_signed(folder):
    """A CA-less self-signed server certificate for localhost/127.0.0.1 (the `cryptography` package)."""
    x509 = pytest.importorskip("cryptography.x509", reason="the TLS tests make a certificate with `cryptography`")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_mqtts_against_a_tls_broker(tmp_path):
    from deploy.sinks import MqttSink
    cert, key = _self_signed(tmp_path)
    broker = _broker(tmp_path, f"cafile {cert}\ncertfile {cert}\nkeyfile {key}\n")
    sink = None
    watcher = Watcher(broker.port, "fog/tls-dev/#", ca_certs=str(cert))
    try:
        url = parse_sink(f"mqtts://localhost:{broker.port}")
        sink = MqttSink(**{k: v for k, v in url.items() if k != "kind"}, ca_file=str(cert), device_id="tls-dev",
                        connect_timeout_s=5)
        assert sink.client.is_connected()
        sink.send({"type": "event", "class": "Turn", "onset_s": 1.0})
        assert watcher.wait(lambda m: m[0] == "fog/tls-dev/events" and json.loads(m[1])["class"] == "Turn")
        assert watcher.wait(lambda m: m[:2] == ("fog/tls-dev/status", "online"))
    finally:
        if sink:
            sink.close()
        watcher.close()
        broker.stop(hard=True)
    assert sink.failures == 0


def test_mqtts_refuses_a_broker_its_ca_does_not_sign(tmp_path, caplog):
    """Default: the system CAs, which do not sign the test's certificate: never connected, events count as
    failures at exit (nothing is sent in clear)."""
    from deploy.sinks import MqttSink
    cert, key = _self_signed(tmp_path)
    broker = _broker(tmp_path, f"cafile {cert}\ncertfile {cert}\nkeyfile {key}\n")
    try:
        sink = MqttSink(host="localhost", port=broker.port, tls=True, device_id="tls-dev", connect_timeout_s=1.5)
        assert not sink.client.is_connected()
        sink.send({"type": "event", "class": "Turn", "onset_s": 1.0})
        sink.close(timeout_s=0.2)
    finally:
        broker.stop(hard=True)
    assert sink.failures == 1


def test_mqtts_tls_failure_and_a_broker_down_are_named_with_the_fix(tmp_path, caplog):
    """Issue 28: paho keeps a TLS failure to its thread; the sink says why it is not connected, and the fix."""
    from deploy.sinks import MqttSink
    cert, key = _self_signed(tmp_path)
    broker = _broker(tmp_path, f"cafile {cert}\ncertfile {cert}\nkeyfile {key}\n")
    try:
        with caplog.at_level(logging.WARNING, "deploy.sinks"):
            sink = MqttSink(host="localhost", port=broker.port, tls=True, device_id="tls-dev", connect_timeout_s=1)
            sink.close(timeout_s=0)
    finally:
        broker.stop(hard=True)
    assert "the broker's certificate is not trusted" in caplog.text and "ca_file" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "deploy.sinks"):
        MqttSink(host="127.0.0.1", port=free_port(), device_id="down", connect_timeout_s=0.2).close(timeout_s=0)
    assert "nothing listens on 127.0.0.1" in caplog.text
