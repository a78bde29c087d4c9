"""Bundle signatures (Ed25519): what the device trusts beyond a bundle's own digest, and how it checks it.

What is signed is the bundle digest (`deploy.bundle.bundle_digest`: the sha256 of the canonical manifest, which lists
every file's sha256), prefixed with a fixed context string. The signature lives beside the manifest, in
`signature.json`, never inside it: editing the manifest changes the digest, and a signature made for the old digest
cannot verify against the new one, whoever recomputes the digest field. Only the holder of the private key can sign
the new digest.

    signature.json = {"format": "fog-bundle-signature/1",
                      "signatures": [{"algorithm": "ed25519", "key_id": "<16 hex>", "public_key": "<base64>",
                                      "digest": "sha256:...", "signature": "<base64, 64 bytes>",
                                      "signed_at": "...", "signer": "..."}]}

`key_id`, `public_key`, `signed_at` and `signer` are informational: verification uses the trusted key's own bytes,
from the daemon's `trusted_keys` (a PEM public key file, as `toolkit keygen` or `openssl pkey -pubout` write it, or
the raw key in base64, inline or in a file). `check_trust` says what anchors a bundle: a trusted signature, a pinned
digest, or nothing (the daemon then warns loudly). Verification uses PyNaCl (libsodium), imported when a signature is
checked; signing happens on the workstation (`toolkit.export.signer`, with the `cryptography` package).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from deploy.contract import SIGNATURE_FILE
from deploy.errors import BundleError, FogError, printable
from deploy.lazy import available, lazy_import

nacl_signing = lazy_import("nacl.signing", "device", "checking a bundle's signature", package="pynacl")
nacl_exceptions = lazy_import("nacl.exceptions", "device", "checking a bundle's signature", package="pynacl")

FORMAT = "fog-bundle-signature/1"
CONTEXT = b"fog-edge-toolkit bundle signature v1\n"   # a signature over a digest for this purpose and no other
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")   # DER of an Ed25519 public key, before its 32 bytes
PEM_RE = re.compile(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.S)
KEY_BYTES, SIGNATURE_BYTES = 32, 64
MAX_SIGNATURE_FILE = 256 * 1024   # a few signatures are a few hundred bytes each


def signed_message(digest: str) -> bytes:
    """The bytes an Ed25519 signature of a bundle covers: the context, then the bundle digest."""
    return CONTEXT + digest.encode("ascii")


def key_id(public_key: bytes) -> str:
    """A short name for a public key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _b64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise FogError(f"{what}: not base64") from None
    if len(raw) != size:
        raise FogError(f"{what}: {len(raw)} bytes, an Ed25519 key is {size}")
    return raw


def parse_public_key(text: str, where: str) -> bytes:
    """The 32 raw bytes of an Ed25519 public key given as a PEM SubjectPublicKeyInfo or as base64 of the raw key."""
    pem = PEM_RE.search(text)
    try:
        if pem:
            der = _b64("".join(pem.group(1).split()), len(ED25519_SPKI_PREFIX) + KEY_BYTES, where)
            if not der.startswith(ED25519_SPKI_PREFIX):
                raise FogError(f"{where}: a PEM public key, but not Ed25519")
            return der[len(ED25519_SPKI_PREFIX):]
        return _b64(text, KEY_BYTES, where)
    except FogError as exc:
        raise FogError(f"{exc}; give the PEM file `toolkit keygen` wrote (KEY.pub) or the base64 key it printed") \
            from None


def load_trusted_keys(values) -> dict[str, bytes]:
    """key id -> raw public key, from the `trusted_keys` setting: each a file (PEM or base64) or a base64 key."""
    keys = {}
    for i, value in enumerate(values or []):
        where = f"trusted_keys[{i}]"
        try:
            raw = _b64(value, KEY_BYTES, where)
        except FogError:
            path = Path(value)
            try:
                raw = parse_public_key(path.read_text(errors="replace"), f"{where} ({path})")
            except OSError as exc:
                raise FogError(f"{where} = {printable(value)!r}: neither a base64 Ed25519 key nor a readable file "
                               f"({exc.strerror}); give the path of KEY.pub from `toolkit keygen`, or the base64 key "
                               "it printed") from None
        keys[key_id(raw)] = raw
    return keys


def read_signatures(folder) -> list[dict]:
    """The entries of the bundle's signature file; [] when it has none; BundleError when it is malformed."""
    path = Path(folder) / SIGNATURE_FILE
    if not path.exists():
        return []
    if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_SIGNATURE_FILE:
        raise BundleError(f"{path}: not a plain signature file (a symlink, a folder or over "
                          f"{MAX_SIGNATURE_FILE // 1024} KiB); sign the bundle again (`toolkit sign`)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable ({exc}); sign the bundle again (`toolkit sign`)") from None
    entries = data.get("signatures") if isinstance(data, dict) and data.get("format") == FORMAT else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BundleError(f"{path}: not a {FORMAT} file; sign the bundle again (`toolkit sign`)")
    return entries


def verify_entry(entry: dict, digest: str, public_key: bytes) -> str | None:
    """None when `entry` is a valid signature of `digest` by `public_key`, else why not."""
    if entry.get("algorithm") != "ed25519":
        return f"algorithm {printable(entry.get('algorithm'))!r} is not ed25519"
    if entry.get("digest") != digest:
        return (f"it signs digest {printable(entry.get('digest'))[:23]}..., the manifest's is {digest[:23]}... (the "
                "manifest was changed after signing, its digest recomputed)")
    try:
        signature = _b64(str(entry.get("signature", "")), SIGNATURE_BYTES, "signature")
    except FogError as exc:
        return str(exc).replace("an Ed25519 key", "an Ed25519 signature")
    try:
        nacl_signing.VerifyKey(public_key).verify(signed_message(digest), signature)
    except nacl_exceptions.BadSignatureError:
        return "the signature does not verify (forged, or made for other bytes)"
    return None


@dataclass
class Trust:
    """What vouches for a bundle beyond its own digest: "signature" (a trusted key), "pin" (a pinned digest) or
    "none"; `warnings` are said loudly at start."""
    anchor: str
    key_id: str | None = None
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return {"signature": f"signed by trusted key {self.key_id}", "pin": "its digest is pinned",
                "none": "NOT ANCHORED (no trusted signature, no pinned digest)"}[self.anchor]


UNANCHORED = ("nothing but the bundle's own digest vouches for it, and anyone who can write the bundle folder can "
              "recompute that digest: configure trusted_keys (and sign bundles with `toolkit sign`) or pin "
              "bundle_digest")


def _signed_by_trusted(entries, digest, trusted) -> tuple[str | None, list[str]]:
    """(id of a trusted key with a valid signature, or None; why each entry failed)."""
    problems = []
    for entry in entries:
        kid = str(entry.get("key_id", "?"))
        named = entry.get("public_key")   # a hint: the trusted key's own bytes verify
        matching = [k for k, raw in trusted.items() if named in (None, base64.b64encode(raw).decode())]
        if not matching:
            problems.append(f"signed by key {printable(kid)}, which is not among trusted_keys")
            continue
        for candidate in matching:
            why = verify_entry(entry, digest, trusted[candidate])
            if why is None:
                return candidate, problems
        problems.append(f"signature by key {printable(kid)}: {why}")
    return None, problems


def _self_consistent(entries, digest) -> list[str]:
    """Without trusted keys a signature proves nothing, but one that does not match its own key and this manifest
    shows the manifest changed after signing."""
    problems = []
    for entry in entries:
        try:
            raw = _b64(str(entry.get("public_key", "")), KEY_BYTES, "public_key")
        except FogError as exc:
            problems.append(f"signature entry: {exc}")
            continue
        why = verify_entry(entry, digest, raw)
        if why:
            problems.append(f"signature by key {printable(entry.get('key_id', '?'))}: {why}")
    return problems


def check_trust(folder, digest: str, trusted: dict[str, bytes], require_signature: bool | None = None,
                pinned: bool = False) -> Trust:
    """What anchors the bundle in `folder` (its digest already verified): raises BundleError when a signature is
    required (trusted keys configured, unless `require_signature` is False) and none verifies, or when a signature
    it carries does not match it."""
    entries = read_signatures(folder)
    require = bool(trusted) if require_signature is None else require_signature
    if require and not trusted:
        raise FogError("require_signature = true needs trusted_keys (the public keys whose signatures count)")
    if trusted and entries:
        good, problems = _signed_by_trusted(entries, digest, trusted)
        if good:
            return Trust("signature", good)
        raise BundleError(f"{folder}: no valid signature by a trusted key; refusing it:\n  - " + "\n  - ".join(problems)
                          + "\nDeploy the bundle as it was signed, or sign this one with a trusted key (`toolkit sign "
                          "BUNDLE --key KEY`) if you made it")
    if require:
        raise BundleError(f"{folder}: not signed, and trusted_keys are configured so only a bundle signed by one of "
                          "them runs; sign it (`toolkit sign BUNDLE --key KEY`, or `toolkit export --sign-key KEY`)")
    warnings = []
    if entries and available(nacl_signing):
        problems = _self_consistent(entries, digest)
        if problems:
            raise BundleError(f"{folder}: its signature does not match it; refusing it:\n  - " + "\n  - ".join(problems)
                              + "\nThe manifest was changed after signing: deploy the bundle as it was signed")
    if entries:
        ids = ", ".join(printable(e.get("key_id", "?")) for e in entries)
        warnings.append(f"the bundle is signed (key {ids}) but no trusted_keys are configured, so the signature "
                        "is not checked against a key you trust: add the signer's public key to trusted_keys")
    if trusted:   # require_signature = false: a transition, said each start
        warnings.append("unsigned bundle accepted because require_signature = false")
    if pinned:
        return Trust("pin", warnings=warnings)
    return Trust("none", warnings=warnings + [UNANCHORED])


def bundle_trust(folder, digest: str, config: dict) -> Trust:
    """`check_trust` with the daemon's settings (`trusted_keys`, `require_signature`, a pinned `bundle_digest`)."""
    return check_trust(folder, digest, load_trusted_keys(config.get("trusted_keys")), config.get("require_signature"),
                       pinned=bool(config.get("bundle_digest")))
