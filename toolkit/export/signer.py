"""Signing bundles on the workstation: Ed25519 keys and signatures with the `cryptography` package.

    toolkit keygen keys/lab                 # keys/lab (private, PEM PKCS#8, mode 0600) and keys/lab.pub (PEM)
    toolkit export ... --sign-key keys/lab  # sign the bundle it writes
    toolkit sign BUNDLE --key keys/lab      # sign (or add a signature to) an existing bundle

What is signed and how the device checks it: `deploy.signing`. A private key can be encrypted with a passphrase
(`--passphrase-env VAR` names the environment variable that holds it; never a flag: flags show in `ps`). Keys made
by `openssl genpkey -algorithm ed25519` work too. A bundle is verified before it is signed: a signature never
vouches for files that do not match their manifest.
"""
from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from deploy.bundle import Bundle
from deploy.contract import SIGNATURE_FILE
from deploy.errors import FogError
from deploy.lazy import lazy_import
from deploy.signing import FORMAT, key_id, read_signatures, signed_message

ed25519 = lazy_import("cryptography.hazmat.primitives.asymmetric.ed25519", "workstation", "signing bundles",
                      package="cryptography")
serialization = lazy_import("cryptography.hazmat.primitives.serialization", "workstation", "signing bundles",
                            package="cryptography")


class SigningError(FogError):
    """A key that cannot be made, read or used; the message names the file and the fix."""


def passphrase_from(env_var: str | None) -> bytes | None:
    """The passphrase held in environment variable `env_var` (None: the key is not encrypted)."""
    if not env_var:
        return None
    value = os.environ.get(env_var)
    if not value:
        raise SigningError(f"--passphrase-env {env_var}: the variable is not set or empty; export it first "
                           f"(e.g. read -s {env_var} && export {env_var})")
    return value.encode()


def raw_public(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_key(path, passphrase: bytes | None = None, force: bool = False) -> dict:
    """Write a new private key to `path` (mode 0600) and its public key to `path`.pub; returns their description."""
    path, pub_path = Path(path), Path(f"{path}.pub")
    for existing in (path, pub_path):
        if existing.exists() and not force:
            raise SigningError(f"{existing} exists; refusing to overwrite a key (a lost private key cannot sign "
                               "again): choose another name, or pass --force")
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True)
    if force and path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    pub_path.write_bytes(public_pem)
    raw = raw_public(key.public_key())
    return {"private": str(path), "public": str(pub_path), "key_id": key_id(raw),
            "public_base64": base64.b64encode(raw).decode()}


def load_private_key(path, passphrase: bytes | None = None):
    """The Ed25519 private key in PEM file `path` (encrypted with `passphrase` when it is)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"--key {path}: cannot read it ({exc.strerror}); give the private key `toolkit keygen` "
                           "wrote (not the .pub file)") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:   # encrypted without a passphrase, or a passphrase for a plain key
        raise SigningError(f"--key {path}: {exc}; pass --passphrase-env VAR when the key is encrypted, and only "
                           "then") from None
    except ValueError as exc:
        raise SigningError(f"--key {path}: not a readable PEM private key ({exc}); a wrong passphrase, or the .pub "
                           "file given instead of the private key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"--key {path}: a {type(key).__name__}, not an Ed25519 key; make one with `toolkit keygen`")
    return key


def sign_bundle(folder, key, signer: str | None = None) -> dict:
    """Verify the bundle in `folder`, sign its digest with `key` and write the signature file (a signature by the
    same key is replaced, others kept); returns the new entry."""
    bundle = Bundle.load(folder, verify=True)   # BundleError names every file that does not match
    raw = raw_public(key.public_key())
    entry = {"algorithm": "ed25519", "key_id": key_id(raw), "public_key": base64.b64encode(raw).decode(),
             "digest": bundle.digest, "signature": base64.b64encode(key.sign(signed_message(bundle.digest))).decode(),
             "signed_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "signer": signer}
    others = [e for e in read_signatures(bundle.folder) if e.get("key_id") != entry["key_id"]
              and e.get("digest") == bundle.digest]   # signatures of an older manifest are of no use any more
    path = bundle.folder / SIGNATURE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "signatures": others + [entry]}, indent=2) + "\n")
    os.replace(tmp, path)
    return entry
