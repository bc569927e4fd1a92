"""Department-signed records: a department's own JWS over what it answered.

The payload (typ ``tongban-record+jws``) is the RFC 8785 canonical JSON of the record as
the department sent it: record type, source record id, subject (``KIND:value``, the
normalized key), fields, and when it was signed. The hub checks it on arrival with the
department's keys (registered with its adapter; each a `TrustedKey` whose status and
validity apply as to issuer keys: a retired key verifies what it signed while valid, a
compromised one fails what was signed since the compromise), keeps it with the record
and passes it through, so a hall can show the department's word and not only the hub's.

The department keys are published beside the trust bundle as a JWK Set signed by the
hub's root key (typ ``tongban-department-keys+jws``).

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from domain.errors import TongbanError
from domain.records import canonical_json
from signing.jws import parse_compact, sign_compact, verify_compact
from signing.keys import PublicKey, SigningKey
from signing.trust import TrustedKey

TYP_RECORD = "tongban-record+jws"
TYP_DEPARTMENT_KEYS = "tongban-department-keys+jws"


def record_claims(
    record_type: str,
    source_record_id: str,
    subject: str,
    fields: Mapping[str, Any],
    signed_at: datetime,
) -> dict[str, Any]:
    """What a department signs for one record (`subject` is ``KIND:value``)."""
    return {
        "record_type": record_type,
        "source_record_id": source_record_id,
        "subject": subject,
        "fields": dict(fields),
        "signed_at": signed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def sign_record(
    key: SigningKey,
    record_type: str,
    source_record_id: str,
    subject: str,
    fields: Mapping[str, Any],
    signed_at: datetime,
) -> str:
    """The department's compact JWS over one record."""
    claims = record_claims(record_type, source_record_id, subject, fields, signed_at)
    return sign_compact(canonical_json(claims), key, typ=TYP_RECORD)


def check_record_signature(
    token: str,
    keys: Sequence[TrustedKey],
    *,
    record_type: str,
    source_record_id: str,
    subject: str,
    fields: Mapping[str, Any],
) -> str | None:
    """None when `token` is a valid department signature over exactly this record by
    one of `keys`; otherwise the reason (for a rejected record)."""
    try:
        kid = parse_compact(token, typ=TYP_RECORD).kid
    except TongbanError as exc:
        return f"department signature malformed: {exc.message}"
    key = next((k for k in keys if k.kid == kid), None)
    if key is None:
        return f"department signature by key {kid[:16]}…, not a key of this department"
    try:
        claims = json.loads(verify_compact(token, key.public_key, typ=TYP_RECORD).payload)
    except (TongbanError, ValueError):
        return "department signature does not verify"
    try:
        signed_at = datetime.strptime(str(claims.get("signed_at")), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return "department signature has no valid signed_at"
    fault = key.issue_fault(signed_at.replace(tzinfo=UTC))
    if fault is not None:
        return f"department key {kid[:16]}…: {fault}"
    expected = record_claims(
        record_type, source_record_id, subject, fields, signed_at.replace(tzinfo=UTC)
    )
    if canonical_json(claims) != canonical_json(expected):
        return "department signature is over other content than the record sent"
    return None


def sign_department_keys(
    keys: Mapping[str, Sequence[TrustedKey]], root: SigningKey, issued_at: datetime
) -> str:
    """The department keys by adapter id, as a JWK Set signed by the root key."""
    document = {
        "keys": [
            {**key.to_jwk(), "tongban_adapter": adapter_id}
            for adapter_id, listed in sorted(keys.items())
            for key in listed
        ],
        "tongban_issued_at": issued_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return sign_compact(canonical_json(document), root, typ=TYP_DEPARTMENT_KEYS)


def open_department_keys(token: str, root: PublicKey) -> dict[str, list[TrustedKey]]:
    """The department keys by adapter id from `sign_department_keys`' JWS.

    Raises `VerificationError` subclasses (bad signature, malformed document)."""
    document = json.loads(verify_compact(token.strip(), root, typ=TYP_DEPARTMENT_KEYS).payload)
    out: dict[str, list[TrustedKey]] = {}
    for jwk in document.get("keys") or []:
        adapter_id = str(jwk.get("tongban_adapter", ""))
        plain = {k: v for k, v in jwk.items() if k != "tongban_adapter"}
        out.setdefault(adapter_id, []).append(TrustedKey.from_jwk(plain))
    return out
