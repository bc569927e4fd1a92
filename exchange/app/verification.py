"""Verifying what someone was shown: the one rule for "token or id".

A token (or QR text holding one) is checked as it is, explained from the store only
when a check failed; an id (or a QR link) is looked up in the store first, and that
lookup reveals the certificate, so its holder is told (the caller audits `looked_up`).
Single verifications, streams and the verification page all decide through here.
"""

from __future__ import annotations

from dataclasses import dataclass

from certstore.certificates import StoredCertificate
from exchange.certificates.library import CertificateLibrary
from exchange.certificates.publisher import PublishedTrust
from exchange.certificates.verification import (
    OnlineVerdict,
    OnlineVerifier,
    Presented,
    needs_explaining,
    token_of,
)


@dataclass(frozen=True, slots=True)
class Verified:
    """A verdict, and the certificate read from the store for an id (to be audited)."""

    result: OnlineVerdict
    looked_up: StoredCertificate | None = None


def quick_verdict(presented: Presented, trust: PublishedTrust) -> OnlineVerdict | None:
    """The verdict on a presented token when no store read is needed, else None.

    Pure and cheap: the event loop may call it; everything else goes to `verify_presented`.
    """
    token = token_of(presented)
    if token is None:
        return None
    result = OnlineVerifier.verify(token, trust)
    return result if needs_explaining(result.verdict) is None else None


def verify_presented(
    library: CertificateLibrary, presented: Presented, trust: PublishedTrust
) -> Verified:
    """Verify what was presented (blocking: it may read the store).

    Raises `InvalidRequest` (a malformed id or QR text), `NotFound` (no such
    certificate), `StoreError`.
    """
    token = token_of(presented)
    if token is None:
        stored_token, stored = library.verifier.lookup(presented)
        return Verified(OnlineVerifier.verify(stored_token, trust, stored), stored)
    result = OnlineVerifier.verify(token, trust)
    if needs_explaining(result.verdict) is None:
        return Verified(result)
    return Verified(library.verifier.explain(result, token))
