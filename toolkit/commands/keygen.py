"""Make an Ed25519 key pair to sign bundles with (`toolkit sign`, `toolkit export --sign-key`).

  toolkit keygen keys/lab                          # keys/lab (private, mode 0600) and keys/lab.pub
  FOG_KEY_PASS=... toolkit keygen keys/lab --passphrase-env FOG_KEY_PASS   # the private key encrypted

Keep the private key off the device. On the device, trust the public key: copy KEY.pub there and list it in the
daemon's config (`trusted_keys = ["/etc/fog/keys/lab.pub"]`), or paste the base64 key this command prints.
"""
from __future__ import annotations

from toolkit.export.signer import generate_key, passphrase_from

HELP = "make an Ed25519 key pair for signing bundles"


def add_arguments(p) -> None:
    p.add_argument("key", help="private key file to write; the public key goes to KEY.pub")
    p.add_argument("--passphrase-env", metavar="VAR",
                   help="encrypt the private key with the passphrase held in environment variable VAR")
    p.add_argument("--force", action="store_true", help="replace existing key files")


def run(args) -> int:
    made = generate_key(args.key, passphrase_from(args.passphrase_env), force=args.force)
    print(f"private key  {made['private']}  (mode 0600; keep it off the device)")
    print(f"public key   {made['public']}")
    print(f"key id       {made['key_id']}")
    print(f"trust it on the device (daemon TOML): trusted_keys = [\"{made['public_base64']}\"]")
    return 0
