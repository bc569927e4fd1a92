"""The hub's e-certificate library (电子证照库): its parts, built once from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from certstore.certificates import CertificateStore, StoredCertificate
from certstore.database import Database
from domain.errors import FailedPrecondition
from exchange.audit import AuditTrail
from exchange.certificates.keys import (
    KeyManager,
    KeyProvider,
    PassphraseKeyProvider,
    UnavailableKeyProvider,
    key_passphrase,
)
from exchange.certificates.lifecycle import CertificateLifecycle
from exchange.certificates.publisher import TrustPublisher, TrustTiming
from exchange.certificates.types import CertificateTypes
from exchange.certificates.usage import CertificateUse
from exchange.certificates.verification import (
    OnlineVerdict,
    OnlineVerifier,
    Presented,
    check_presented,
    token_of,
)
from exchange.settings import Settings
from signing import QR_MAX_TOKEN_LENGTH, Algorithm, qr_payload

log = structlog.get_logger("tongban.certificates")

FIRST_START_ACTOR = "tongban (first start)"
SIGNING_UNCONFIGURED = (
    "no signing-key passphrase is configured: production mode needs "
    "signing.passphrase_env or signing.passphrase_file"
)


def status_list_uri(settings: Settings) -> str | None:
    """Where the status list is published, when the hub has a public URL."""
    url = settings.signing.public_url
    return None if url is None else f"{url}/status/1"


def key_provider(settings: Settings) -> KeyProvider:
    """The configured source of private keys: encrypted PKCS#8 under the passphrase.

    Raises:
        ConfigError: the passphrase file cannot be read.
    """
    passphrase = key_passphrase(settings)
    if passphrase is None:
        return UnavailableKeyProvider(SIGNING_UNCONFIGURED)
    return PassphraseKeyProvider(passphrase)


@dataclass
class CertificateLibrary:
    """Types, keys, lifecycle, published trust and online verification of one hub node."""

    types: CertificateTypes
    store: CertificateStore
    keys: KeyManager
    lifecycle: CertificateLifecycle
    trust: TrustPublisher
    verifier: OnlineVerifier
    use: CertificateUse
    public_url: str | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        database: Database,
        audit: AuditTrail,
        *,
        provider: KeyProvider | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> CertificateLibrary:
        """Build the library; generate missing keys where configured; open the keys.

        `provider` replaces the configured key source (an HSM binding, tests).

        Raises:
            ConfigError: the passphrase cannot be read or does not decrypt a stored key.
            StoreError: the database failed.
        """
        provider = provider or key_provider(settings)
        store = CertificateStore(
            database,
            status_list_uri=status_list_uri(settings),
            audit_hash=settings.crypto.suite.hash_alg,
        )
        types = CertificateTypes(settings.certificate_types)
        publisher: TrustPublisher | None = None

        def changed() -> None:
            if publisher is not None:
                publisher.invalidate()

        keys = KeyManager(
            store,
            provider,
            algorithm=Algorithm(settings.signing_algorithm),
            clock=clock,
            on_change=changed,
        )
        publisher = TrustPublisher(
            store, keys, TrustTiming.from_settings(settings.signing), clock=clock
        )
        generate = settings.signing.generate_missing_keys
        if generate is None:
            generate = settings.server.mode == "dev"
        if generate and not isinstance(provider, UnavailableKeyProvider):
            keys.ensure(
                types.issuers(),
                FIRST_START_ACTOR,
                types.issuer_algorithms(Algorithm(settings.signing_algorithm)),
            )
        elif isinstance(provider, UnavailableKeyProvider) and len(types):
            log.warning("certificates cannot be signed", reason=provider.reason)
        keys.warm()
        lifecycle = CertificateLifecycle(
            store, types, keys, audit, clock=clock, on_status_change=publisher.invalidate
        )
        return cls(
            types=types,
            store=store,
            keys=keys,
            lifecycle=lifecycle,
            trust=publisher,
            verifier=OnlineVerifier(store),
            use=CertificateUse(
                store, types, keys, audit, public_url=settings.signing.public_url, clock=clock
            ),
            public_url=settings.signing.public_url,
        )

    def verify_presented(self, presented: Presented) -> OnlineVerdict:
        """Verify what a verifier was shown, online (blocking: store reads; run it on a
        worker thread). A caller that shows content looked up by id should audit that.

        Raises:
            InvalidRequest: a malformed id or QR text.
            NotFound: an id (or QR link) this hub holds no certificate for.
            StoreError: the database failed.
        """
        check_presented(presented)
        trust = self.trust.current()
        token = token_of(presented)
        if token is None:
            stored_token, stored = self.verifier.lookup(presented)
            return OnlineVerifier.verify(stored_token, trust, stored)
        return self.verifier.explain(OnlineVerifier.verify(token, trust), token)

    def signing_problem(self) -> str | None:
        """Why this node cannot sign (for health checks), or None when it can.

        Raises:
            StoreError: the database failed.
        """
        provider = self.keys.provider
        if isinstance(provider, UnavailableKeyProvider):
            return provider.reason
        if self.keys.root() is None:
            return "the hub has no root key; run: tongban keys generate --root"
        return None

    def qr_text(self, stored: StoredCertificate) -> str:
        """What the certificate's QR code holds: its token, or `<public_url>/v/<id>`.

        Raises:
            FailedPrecondition: the token is too long for a QR code and no
                `signing.public_url` is configured.
        """
        if len(stored.token) <= QR_MAX_TOKEN_LENGTH:
            return stored.token
        if self.public_url is None:
            raise FailedPrecondition(
                "the token is too long for a QR code; set signing.public_url to link to it"
            )
        return qr_payload(stored.token, self.public_url, stored.id)
