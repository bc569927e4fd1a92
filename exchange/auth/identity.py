"""Who is calling: the caller's identity from its client certificate, or a dev token.

In production mode every connection is mutual TLS; the TLS layer has already checked
the certificate chain against the configured CA and refused expired certificates at
the handshake. Here the hub reads the identity out of the certificate and refuses,
with UNAUTHENTICATED, a certificate that is on the CA's revocation list or that has
expired since the connection was opened.

In dev mode (plaintext) a caller may present a dev token (``authorization: Bearer
…``), an HMAC-signed statement of the same identity, so policies can be tried
locally; a caller with no token is anonymous and, when the configuration allows it
(the default in dev), may do everything. Both are said loudly in the log at start.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from domain.errors import InvalidKey, Unauthenticated
from domain.subjects import SubjectKey, parse_key
from exchange.auth.ca import ROLE_PREFIX, SUBJECT_PREFIX
from exchange.auth.policy import Caller
from exchange.auth.revocation import RevocationList
from signing.base64url import b64url_decode, b64url_encode

ANONYMOUS_DEV = Caller(organization="", system="anonymous", anonymous_dev=True)
_current: contextvars.ContextVar[Caller] = contextvars.ContextVar("tongban_caller")


def current_caller() -> Caller:
    """The caller of the RPC being served (set by the interceptor)."""
    return _current.get(ANONYMOUS_DEV)


def set_current_caller(caller: Caller) -> contextvars.Token[Caller]:
    return _current.set(caller)


def _subject_from_uri(uri: str) -> SubjectKey:
    kind, _, value = uri.removeprefix(SUBJECT_PREFIX).partition(":")
    return parse_key(kind, value)


def caller_from_certificate(certificate: x509.Certificate) -> Caller:
    """Read the caller's identity out of its client certificate (see `exchange.auth.ca`).

    Raises `Unauthenticated` when the certificate carries no organization or system.
    """
    organizations = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)
    systems = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not organizations or not systems:
        raise Unauthenticated(
            "the client certificate names no organizationIdentifier (USCC) and CN (system)"
        )
    roles: set[str] = set()
    subject = None
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    for uri in uris:
        if uri.startswith(ROLE_PREFIX):
            roles.add(uri.removeprefix(ROLE_PREFIX))
        elif uri.startswith(SUBJECT_PREFIX):
            try:
                subject = _subject_from_uri(uri)
            except InvalidKey as exc:
                raise Unauthenticated("the client certificate binds an invalid subject") from exc
    return Caller(
        organization=str(organizations[0].value),
        system=str(systems[0].value),
        roles=frozenset(roles),
        subject=subject,
    )


def issue_dev_token(
    secret: bytes,
    organization: str,
    system: str,
    *,
    roles: Sequence[str] = (),
    subject: SubjectKey | None = None,
    lifetime: float = 8 * 3600,
) -> str:
    """A dev-mode token stating a caller's identity, signed with HMAC-SHA256."""
    claims: dict[str, Any] = {
        "org": organization,
        "sys": system,
        "roles": sorted(roles),
        "exp": int(time.time() + lifetime),
    }
    if subject is not None:
        claims["subject"] = f"{subject.kind.value}:{subject.value}"
    body = b64url_encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{b64url_encode(mac)}"


def caller_from_dev_token(secret: bytes, token: str) -> Caller:
    """Check a dev token. Raises `Unauthenticated` for a bad signature or an expired one."""
    body, _, mac = token.partition(".")
    try:
        expected = hmac.new(secret, body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, b64url_decode(mac)):
            raise Unauthenticated("the dev token's signature does not verify")
        claims = json.loads(b64url_decode(body))
        if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
            raise Unauthenticated("the dev token has expired")
        subject = claims.get("subject")
        return Caller(
            organization=str(claims["org"]),
            system=str(claims["sys"]),
            roles=frozenset(str(r) for r in claims.get("roles", [])),
            subject=parse_key(*str(subject).split(":", 1)) if subject else None,
        )
    except (ValueError, KeyError, TypeError, InvalidKey) as exc:
        raise Unauthenticated("the dev token is malformed") from exc


class CallerResolver:
    """Turns a call's transport facts into a `Caller`, or refuses it."""

    def __init__(
        self,
        *,
        production: bool,
        crl_file: Path | None = None,
        client_ca_file: Path | None = None,
        dev_token_secret: bytes | None = None,
        dev_allow_anonymous: bool = True,
    ) -> None:
        self.production = production
        self.revocations = RevocationList(crl_file, client_ca_file)
        self._dev_secret = dev_token_secret
        self._dev_anonymous = dev_allow_anonymous

    def resolve(
        self, auth_context: Mapping[str, Iterable[bytes]], metadata: Sequence[tuple[str, Any]]
    ) -> Caller:
        """Raises `Unauthenticated` when the caller cannot be identified or is refused."""
        if self.production:
            return self._from_certificate(auth_context)
        for key, value in metadata:
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                if self._dev_secret is None:
                    raise Unauthenticated("this hub accepts no dev tokens (no secret configured)")
                return caller_from_dev_token(self._dev_secret, value.removeprefix("Bearer "))
        if not self._dev_anonymous:
            raise Unauthenticated("a dev token is required (security.dev_allow_anonymous = false)")
        return ANONYMOUS_DEV

    def _from_certificate(self, auth_context: Mapping[str, Iterable[bytes]]) -> Caller:
        pem = next(iter(auth_context.get("x509_pem_cert") or ()), None)
        if pem is None:
            raise Unauthenticated("a client certificate is required")
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise Unauthenticated("the client certificate cannot be read") from exc
        if certificate.serial_number in self.revocations.revoked():
            raise Unauthenticated("the client certificate has been revoked")
        if certificate.not_valid_after_utc < datetime.now(UTC):
            raise Unauthenticated("the client certificate has expired")
        return caller_from_certificate(certificate)
