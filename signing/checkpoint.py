"""Signed tree heads in the C2SP ``tlog-checkpoint`` format, as C2SP signed notes.

A checkpoint's text is the origin line, the tree size in decimal, the standard-base64
root hash, and (Tongban's one extension line) ``time <RFC 3339 UTC>``; then a blank line
and one signature line ``— <key name> <base64(key id || signature)>``. The key name is
the origin. For Ed25519 the key id is the first four bytes of
SHA-256(key name || 0x0A || 0x01 || public key), as signed-note specifies; other
algorithms use the signed-note "unassigned" type byte 0xFF with the algorithm's name
appended to the key name, so stock tooling simply finds no key it knows.

Pure: the store keeps the note text; verification needs only the root public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from signing.errors import MalformedDocument, SignatureInvalid
from signing.keys import Algorithm, PublicKey, SigningKey

EM_DASH = "\u2014"
ED25519_TYPE = 0x01
OTHER_TYPE = 0xFF
MAX_NOTE_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class TreeHead:
    """What a checkpoint claims: the log `origin` had `size` leaves with `root` at `time`."""

    origin: str
    size: int
    root: bytes
    time: datetime

    def body(self) -> str:
        """The checkpoint text (what is signed), ending in a newline."""
        stamp = self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\ntime {stamp}\n"


def _public_bytes(key: PublicKey | SigningKey) -> bytes:
    jwk = key.jwk() if isinstance(key, PublicKey) else key.public_jwk()
    parts = [jwk.get(name, "") for name in ("x", "y")]
    return b"".join(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in parts if p)


def key_id(name: str, key: PublicKey | SigningKey) -> bytes:
    """The signed-note key id of `key` under `name` (4 bytes)."""
    alg = key.alg
    if alg is Algorithm.EDDSA:
        material = bytes([ED25519_TYPE]) + _public_bytes(key)
    else:
        material = bytes([OTHER_TYPE]) + alg.value.encode() + _public_bytes(key)
    return hashlib.sha256(name.encode() + b"\n" + material).digest()[:4]


def sign_tree_head(head: TreeHead, key: SigningKey) -> str:
    """The checkpoint of `head` signed by `key` (the hub's root key)."""
    _check_origin(head.origin)
    body = head.body()
    signature = key.sign(body.encode())
    blob = base64.b64encode(key_id(head.origin, key) + signature).decode()
    return f"{body}\n{EM_DASH} {head.origin} {blob}\n"


def _check_origin(origin: str) -> None:
    if not origin or any(c.isspace() or ord(c) < 0x20 for c in origin) or "+" in origin:
        raise MalformedDocument(f"checkpoint origin {origin!r} is not a signed-note key name")


def parse_tree_head(note: str) -> tuple[TreeHead, list[tuple[str, bytes]]]:
    """The claims of a checkpoint and its signature lines (name, key id || signature),
    not yet verified. Raises `MalformedDocument` naming what is wrong."""
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise MalformedDocument("checkpoint: longer than a checkpoint can be")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise MalformedDocument("checkpoint: holds a control character")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise MalformedDocument("checkpoint: no blank line before the signatures")
    body, signature_text = note[: split + 1], note[split + 2 :]
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise MalformedDocument("checkpoint: needs an origin, a size and a root hash")
    origin, size_text, root_text, *extensions = lines
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise MalformedDocument(f"checkpoint: tree size {size_text[:40]!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as exc:
        raise MalformedDocument("checkpoint: the root hash is not base64") from exc
    time = datetime.fromtimestamp(0, UTC)
    for line in extensions:
        if line.startswith("time "):
            try:
                time = datetime.strptime(line[5:], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            except ValueError as exc:
                raise MalformedDocument("checkpoint: the time line is not RFC 3339") from exc
    signatures: list[tuple[str, bytes]] = []
    for line in signature_text.split("\n")[:-1]:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise MalformedDocument("checkpoint: a signature line is malformed")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error as exc:
            raise MalformedDocument("checkpoint: a signature is not base64") from exc
        if len(blob) < 5:
            raise MalformedDocument("checkpoint: a signature is too short")
        signatures.append((parts[1], blob))
    if not signatures:
        raise MalformedDocument("checkpoint: it carries no signature")
    return TreeHead(origin, int(size_text), root, time), signatures


def open_tree_head(note: str, root_key: PublicKey, *, origin: str | None = None) -> TreeHead:
    """Verify a checkpoint signed by `root_key` and return what it claims.

    Raises `MalformedDocument` (not a checkpoint, or another log's `origin`) or
    `SignatureInvalid` (no signature by `root_key`, or one that does not verify).
    """
    head, signatures = parse_tree_head(note)
    if origin is not None and head.origin != origin:
        raise MalformedDocument(f"checkpoint: it is for log {head.origin!r}, not {origin!r}")
    wanted = key_id(head.origin, root_key)
    body = note[: note.rfind("\n\n") + 1].encode()
    for name, blob in signatures:
        if name == head.origin and blob[:4] == wanted:
            try:
                root_key.verify(blob[4:], body)
            except SignatureInvalid as exc:
                raise SignatureInvalid(
                    "checkpoint: the root key's signature does not verify"
                ) from exc
            return head
    raise SignatureInvalid("checkpoint: not signed by the hub's root key")
