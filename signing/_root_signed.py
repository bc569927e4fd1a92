"""What the trust bundle and the status list share: a JWS signed by the hub root key,
with `issued_at`, `next_update` and `expires`, refused when expired or rolled back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from domain.errors import TongbanError
from signing.canonical import JSONObject, canonicalize
from signing.errors import DocumentExpired, DocumentRollback, MalformedDocument, MalformedToken
from signing.jws import sign_compact, verify_compact
from signing.keys import PublicKey, SigningKey
from signing.timestamps import parse_rfc3339, to_utc_second


def as_public_key(root: PublicKey | Mapping[str, object]) -> PublicKey:
    """The pinned root key, given as a `PublicKey` or a JWK."""
    return root if isinstance(root, PublicKey) else PublicKey.from_jwk(root)


def sign_document(payload: JSONObject, root_key: SigningKey, *, typ: str) -> str:
    return sign_compact(canonicalize(payload), root_key, typ=typ)


def open_document(
    token: str | bytes, root: PublicKey | Mapping[str, object], *, typ: str, kind: str
) -> JSONObject:
    """The verified claims of a root-signed document (no time checks yet)."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii").strip()
        except UnicodeDecodeError:
            raise MalformedToken(f"{kind}: token is not ASCII") from None
    return verify_compact(token, as_public_key(root), typ=typ).claims()


def read_time(claims: Mapping[str, object], name: str, kind: str) -> datetime:
    try:
        return parse_rfc3339(claims.get(name), name)
    except TongbanError as exc:
        raise MalformedDocument(f"{kind}: {exc.message}") from None


def check_times(
    kind: str, issued_at: datetime, next_update: datetime, expires: datetime
) -> tuple[datetime, datetime, datetime]:
    """Normalized times, checked for issued_at <= next_update <= expires."""
    try:
        times = (
            to_utc_second(issued_at, "issued_at"),
            to_utc_second(next_update, "next_update"),
            to_utc_second(expires, "expires"),
        )
    except TongbanError as exc:
        raise MalformedDocument(f"{kind}: {exc.message}") from None
    if not times[0] <= times[1] <= times[2]:
        raise MalformedDocument(f"{kind}: needs issued_at <= next_update <= expires")
    return times


def check_fresh(
    kind: str,
    issued_at: datetime,
    expires: datetime,
    now: datetime,
    previous_issued_at: datetime | None,
) -> None:
    now = to_utc_second(now, "now")
    if now >= expires:
        raise DocumentExpired(kind, expires, now)
    if previous_issued_at is not None and issued_at < previous_issued_at:
        raise DocumentRollback(
            f"{kind} issued at {issued_at.isoformat()} is older than the one held "
            f"({previous_issued_at.isoformat()})"
        )
