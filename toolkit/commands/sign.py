"""Sign a bundle: an Ed25519 signature of its digest, written beside the manifest (`signature.json`).

  toolkit sign bundles/fog-small --key keys/lab

The bundle is verified first (every file against the manifest, the manifest against its digest): a signature never
vouches for files that changed. Signing again with the same key replaces that key's signature; another key's is
kept, so two people can sign one bundle. The daemon runs a bundle signed by a key in its `trusted_keys`
(docs/daemon.md, threat model).
"""
from __future__ import annotations

from toolkit.commands._options import add_signing_arguments
from toolkit.export.signer import load_private_key, passphrase_from, sign_bundle

HELP = "sign a bundle with an Ed25519 key (toolkit keygen makes one)"


def add_arguments(p) -> None:
    p.add_argument("bundle", help="bundle folder written by `toolkit export`")
    add_signing_arguments(p)


def run(args) -> int:
    key = load_private_key(args.key, passphrase_from(args.passphrase_env))
    entry = sign_bundle(args.bundle, key, signer=args.signer)
    print(f"signed {args.bundle}: digest {entry['digest']}, key {entry['key_id']}")
    return 0
