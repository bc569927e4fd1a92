"""The hub's live parts, built once from the settings and handed to the servicers."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import structlog

from adapters.base import Adapter
from certstore.access import AccessRepository
from certstore.audit import AuditLog, StoredTreeHead
from certstore.database import Database
from certstore.field_cipher import FieldCipher
from certstore.migrate import current, head, upgrade
from certstore.record_signatures import RecordSignatures
from certstore.records import RecordRepository
from certstore.registrations import RegistrationRepository
from domain.errors import ConfigError, FailedPrecondition, StoreError
from exchange.audit import AuditTrail, sign_tree_head
from exchange.auth.identity import CallerResolver
from exchange.auth.policy import AccessPolicy
from exchange.catalog import AdapterCatalog
from exchange.certificates.library import CertificateLibrary
from exchange.receipts import ReceiptIssuer
from exchange.record_types import RecordTypes
from exchange.record_writer import RecordWriter
from exchange.routing import LookupRouter
from exchange.settings import Settings
from exchange.sharing.applications import AccessDesk
from exchange.sharing.catalogue import SharingCatalogue

log = structlog.get_logger("tongban.hub")


@dataclass
class Hub:
    """Settings, store, adapters and record types of one hub node."""

    settings: Settings
    database: Database
    records: RecordRepository
    catalog: AdapterCatalog
    record_types: RecordTypes
    writer: RecordWriter
    policy: AccessPolicy
    resolver: CallerResolver
    audit: AuditTrail
    certificates: CertificateLibrary
    # The sharing catalogue, and the applications and grants decided under it.
    sharing: SharingCatalogue
    access: AccessDesk
    receipts: ReceiptIssuer | None = None
    signatures: RecordSignatures | None = None

    @classmethod
    def open(cls, settings: Settings, adapters: Sequence[Adapter] | None = None) -> Hub:
        """Connect the store (migrating it when configured) and build the adapters.

        `adapters`, when given, replaces the configured ones (for embedding and tests).
        Raises `ConfigError` for an adapter that cannot be built and `StoreError`
        when the database cannot be reached or migrated.
        """
        database = open_store(settings)
        sharing = SharingCatalogue(settings.record_types)
        cipher = _record_cipher(settings)
        catalog = AdapterCatalog(settings, RegistrationRepository(database, cipher), sharing)
        catalog.load(list(adapters) if adapters is not None else None)
        log.info(
            "hub opened",
            database=database.engine.url.render_as_string(hide_password=True),
            adapters=[a.adapter_id for a in catalog.adapters],
        )
        records = RecordRepository(database, cipher, settings.crypto.suite.hash_alg)
        security = settings.security
        secret = security.dev_token_secret
        audit = AuditTrail(
            AuditLog(database, hash_name=settings.crypto.suite.hash_alg.value),
            _audit_subject_key(settings),
        )
        return cls(
            settings,
            database,
            records,
            catalog,
            RecordTypes(settings.record_types),
            RecordWriter(records, settings.exchange.cache_refresh_seconds),
            AccessPolicy(settings.policies),
            CallerResolver(
                production=settings.server.mode == "production",
                crl_file=security.crl_file,
                client_ca_file=security.client_ca_file,
                dev_token_secret=secret.get_secret_value().encode() if secret else None,
                dev_allow_anonymous=security.dev_allow_anonymous,
            ),
            audit,
            library := CertificateLibrary.open(settings, database, audit),
            sharing,
            AccessDesk(sharing, AccessRepository(database), settings.access, audit),
            ReceiptIssuer(library.keys, settings.audit.origin) if settings.audit.receipts else None,
            RecordSignatures(database),
        )

    @property
    def adapters(self) -> list[Adapter]:
        return self.catalog.adapters

    @property
    def router(self) -> LookupRouter:
        """A router over the adapters live right now."""
        return LookupRouter(
            self.catalog.adapters, self.record_types.problem, self.catalog.down_reason
        )

    async def refresh(self) -> None:
        """Pick up registrations other nodes changed; close adapters that left."""
        await self.close_adapters(await asyncio.to_thread(self.catalog.refresh))

    @staticmethod
    async def close_adapters(adapters: Iterable[Adapter]) -> None:
        for adapter in adapters:
            await adapter.close()

    def sign_tree_head(self) -> StoredTreeHead | None:
        """Sign and store a tree head of the audit log with the root key, when the log grew
        since the last one. None when nothing is new or this node has no root key.

        Raises `StoreError`, and the key's errors when it does not open.
        """
        keys = self.certificates.keys
        root = keys.root()
        if root is None:
            return None
        return sign_tree_head(self.audit.store, keys.open(root), self.settings.audit.origin)

    def start(self) -> None:
        """Start the background work (record and audit writes, adapters warming up, such
        as a `file` adapter indexing its folder) on the running loop."""
        self.writer.start()
        self.audit.start()
        for adapter in self.catalog.adapters:
            adapter.warm_up()

    async def close(self) -> None:
        """Finish pending writes, close the adapters and the database."""
        await self.audit.close()
        await self.writer.close()
        await self.close_adapters(self.catalog.adapters)
        self.database.dispose()


def _audit_subject_key(settings: Settings) -> bytes:
    """The configured audit key, or (dev) one generated once into the data folder."""
    if settings.security.audit_subject_key is not None:
        return settings.security.audit_subject_key.get_secret_value().encode()
    path = settings.data_dir / "keys" / "audit-subject.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def _record_cipher(settings: Settings) -> FieldCipher | None:
    """The cipher sealing cached record fields, when configured. Raises `ConfigError`."""
    security = settings.security
    if security.active_record_key is None or security.encrypt_records is False:
        return None
    keys: dict[str, bytes] = {}
    for kid, secret in security.record_keys.items():
        try:
            keys[kid] = base64.b64decode(secret.get_secret_value(), validate=True)
        except ValueError as exc:
            raise ConfigError(f"security.record_keys.{kid}", "not base64") from exc
    return FieldCipher(keys, security.active_record_key, settings.crypto.suite.field_cipher)


def open_store(settings: Settings) -> Database:
    """The store named by `settings`: migrated first when `database.migrate_on_start` is
    on, otherwise required to be at the newest schema already.

    Raises `ConfigError` for an unsupported URL and `StoreError` when the database cannot
    be reached or migrated, or is not at the newest schema.
    """
    url = settings.database_url
    if settings.database.migrate_on_start:
        upgrade(url)
    else:
        _require_newest_schema(url)
    return Database.from_url(url)


def describe_store(settings: Settings) -> str:
    """Where the store of `settings` lives, for people: a file path, or a URL without its
    password."""
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)


def open_existing_store(settings: Settings) -> Database:
    """The store of `settings` for a command that only reads it: never created, never
    migrated (an audit tool must not make the store it checks).

    Raises `FailedPrecondition` naming where it looked when there is no store there, and
    `StoreError` when it cannot be reached or is not at the newest schema.
    """
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).is_file():
        raise FailedPrecondition(
            f"no store at {url.database}: nothing to read (give --config, or set "
            "database.url or data_dir)"
        )
    _require_newest_schema(settings.database_url)
    return Database.from_url(settings.database_url)


def _require_newest_schema(url: str) -> None:
    """Raises `StoreError` saying to run ``tongban db upgrade`` when the database at
    `url` is not at the newest schema revision (`database.migrate_on_start` is off)."""
    at, newest = current(url), head()
    if at != newest:
        found = "no Tongban schema" if at is None else f"schema revision {at}"
        raise StoreError(
            f"the database has {found}, this release needs {newest}: run "
            "`tongban db upgrade` (database.migrate_on_start is off)"
        )
