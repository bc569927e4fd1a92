"""E-certificates, signing keys and the status-list state in the store.

`CertificateStore` reads. `CertificateStore.write()` opens one transaction and yields a
`CertificateWrite`, through which a lifecycle action makes every change it needs,
its audit entries included (`append_audit`): they commit together or not at all.

Rows never leave this module: reads return frozen `StoredCertificate` and `StoredKey`
objects, whose certificate is the `signing.Certificate` parsed from the stored token.
Private keys arrive here already encrypted (or as an HSM reference) and are stored as
they are; the table refuses a PEM that is not an ENCRYPTED PRIVATE KEY.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from certstore.audit import AuditEntry, append_in
from certstore.certificate_models import (
    MATERIAL_ENCRYPTED_PKCS8,
    ROOT_OWNER,
    CertificateRow,
    CertificateStateRow,
    SigningKeyRow,
)
from certstore.database import Database, insert_for
from domain.crypto import HashAlg
from domain.errors import FailedPrecondition, NotFound
from signing import TYP_CERTIFICATE, Algorithm, Certificate, KeyStatus, parse_compact

__all__ = [
    "MATERIAL_ENCRYPTED_PKCS8",
    "ROOT_OWNER",
    "CertificateState",
    "CertificateStatus",
    "CertificateStore",
    "CertificateWrite",
    "HolderQuery",
    "StoredCertificate",
    "StoredKey",
]

STATE_ROW_ID: Final = 1
_INSERT_CERTIFICATES: Final = sa.insert(CertificateRow)
ITERATE_BATCH: Final = 500


class CertificateStatus(StrEnum):
    """Where a stored certificate is in its lifecycle."""

    VALID = "VALID"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"
    SUPERSEDED = "SUPERSEDED"

    @property
    def in_force(self) -> bool:
        """Valid or suspended: not yet revoked or replaced."""
        return self in (CertificateStatus.VALID, CertificateStatus.SUSPENDED)


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    """A certificate as the hub keeps it: content, signed token and lifecycle status."""

    certificate: Certificate
    token: str
    kid: str
    status: CertificateStatus
    status_reason: str
    status_changed_at: datetime
    successor_id: str | None
    request_id: str
    request_fingerprint: str
    # Dual-signed: the second token, the same payload signed by a key of another algorithm.
    second_token: str | None = None
    second_kid: str | None = None

    @property
    def id(self) -> str:
        """The certificate identifier."""
        return self.certificate.id

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every signed token of the certificate, the primary first."""
        return (self.token,) if self.second_token is None else (self.token, self.second_token)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A signing key's public part, lifecycle and (encrypted) private material.

    `owner` is `ROOT_OWNER` for the hub root key, else the issuer's USCC.
    """

    kid: str
    owner: str
    alg: Algorithm
    public_jwk: dict[str, str]
    material_kind: str
    private_material: str = field(repr=False)
    status: KeyStatus
    not_before: datetime
    not_after: datetime | None
    compromised_since: datetime | None
    created_at: datetime
    issuer_department: str | None = None

    @property
    def is_root(self) -> bool:
        """True for the hub root key."""
        return self.owner == ROOT_OWNER


@dataclass(frozen=True, slots=True)
class CertificateState:
    """Hub-wide certificate state: the next status-list index and the change revisions."""

    next_status_index: int
    status_revision: int
    keys_revision: int
    status_list_uri: str | None


@dataclass(frozen=True, slots=True)
class HolderQuery:
    """One page of ListByHolder: newest first, after the (issued_at, id) of `after`."""

    holder_kind: str
    holder_value: str
    limit: int
    type_code: str | None = None
    include_inactive: bool = False
    after: tuple[datetime, str] | None = None


def _certificate_from_row(row: CertificateRow) -> StoredCertificate:
    # The token was signed and checked before it was stored; parse, do not verify.
    claims = parse_compact(row.token, typ=TYP_CERTIFICATE).claims(reject_duplicates=False)
    return StoredCertificate(
        certificate=Certificate.from_claims(claims),
        token=row.token,
        kid=row.kid,
        status=CertificateStatus(row.status),
        status_reason=row.status_reason,
        status_changed_at=row.status_changed_at,
        successor_id=row.successor_id,
        request_id=row.request_id,
        request_fingerprint=row.request_fingerprint,
        second_token=row.second_token,
        second_kid=row.second_kid,
    )


def _key_from_row(row: SigningKeyRow) -> StoredKey:
    return StoredKey(
        kid=row.kid,
        owner=row.owner,
        alg=Algorithm(row.alg),
        public_jwk={str(k): str(v) for k, v in row.public_jwk.items()},
        material_kind=row.material_kind,
        private_material=row.private_material,
        status=KeyStatus(row.status),
        not_before=row.not_before,
        not_after=row.not_after,
        compromised_since=row.compromised_since,
        created_at=row.created_at,
        issuer_department=row.issuer_department,
    )


def _state_from_row(row: CertificateStateRow) -> CertificateState:
    return CertificateState(
        next_status_index=row.next_status_index,
        status_revision=row.status_revision,
        keys_revision=row.keys_revision,
        status_list_uri=row.status_list_uri,
    )


class CertificateWrite:
    """The changes of one lifecycle action, inside one transaction.

    Made only by `CertificateStore.write()`. Methods raise what the database raises;
    `write()` converts that to `StoreError` and rolls everything back.
    """

    def __init__(
        self, session: Session, status_list_uri: str | None, audit_hash: HashAlg = HashAlg.SHA256
    ) -> None:
        self._session = session
        self._status_list_uri = status_list_uri
        self._audit_hash = audit_hash
        self._state: CertificateStateRow | None = None

    def lock_state(self) -> CertificateState:
        """Lock the hub-wide state row (made on first use) for the rest of the transaction.

        Issuance takes this lock first, so concurrent issues, on any node, run one after
        the other: a retried request id is then always seen by its retry.
        """
        if self._state is None:
            self._state = self._session.scalars(
                sa.select(CertificateStateRow)
                .where(CertificateStateRow.id == STATE_ROW_ID)
                .with_for_update()
            ).first()
            if self._state is None:
                self._session.execute(
                    insert_for(self._session, CertificateStateRow)
                    .values(
                        id=STATE_ROW_ID,
                        next_status_index=0,
                        status_revision=0,
                        keys_revision=0,
                        status_list_uri=self._status_list_uri,
                    )
                    .on_conflict_do_nothing()
                )
                self._state = self._session.scalars(
                    sa.select(CertificateStateRow)
                    .where(CertificateStateRow.id == STATE_ROW_ID)
                    .with_for_update()
                ).one()
        return _state_from_row(self._state)

    def take_status_index(self, capacity: int) -> int:
        """The next free status-list index.

        Raises:
            FailedPrecondition: every index up to `capacity` is taken.
        """
        state = self._locked()
        index = state.next_status_index
        if index >= capacity:
            raise FailedPrecondition(f"the status list is full ({capacity} entries)")
        state.next_status_index = index + 1
        return index

    def bump_status_revision(self) -> None:
        """Tell every node that a status bit changed."""
        state = self._locked()
        state.status_revision += 1

    def bump_keys_revision(self) -> None:
        """Tell every node that the key ring changed."""
        state = self._locked()
        state.keys_revision += 1

    def _locked(self) -> CertificateStateRow:
        if self._state is None:
            self.lock_state()
        assert self._state is not None
        return self._state

    def find_requests(
        self, issuer_uscc: str, request_ids: Sequence[str]
    ) -> list[StoredCertificate]:
        """The certificates issued earlier for any of this issuer's `request_ids`."""
        rows = self._session.scalars(
            sa.select(CertificateRow).where(
                CertificateRow.issuer_uscc == issuer_uscc,
                CertificateRow.request_id.in_(list(request_ids)),
            )
        )
        return [_certificate_from_row(row) for row in rows]

    def get_for_update(self, certificate_id: str) -> StoredCertificate:
        """The certificate, locked until the transaction ends.

        Raises:
            NotFound: no such certificate.
        """
        row = self._session.scalars(
            sa.select(CertificateRow).where(CertificateRow.id == certificate_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"no certificate {certificate_id}")
        return _certificate_from_row(row)

    def insert_certificates(self, certificates: Sequence[StoredCertificate]) -> None:
        """Store signed certificates (one statement for all of them)."""
        if not certificates:
            return
        # Core on the session's connection: the ORM adds nothing to a plain insert.
        self._session.connection().execute(
            _INSERT_CERTIFICATES,
            [
                {
                    "id": stored.certificate.id,
                    "type_code": stored.certificate.type_code,
                    "issuer_uscc": stored.certificate.issuer_uscc,
                    "serial": stored.certificate.serial,
                    "version": stored.certificate.version,
                    "holder_kind": stored.certificate.holder_kind,
                    "holder_value": stored.certificate.holder_value,
                    "issued_at": stored.certificate.issued_at,
                    "valid_from": stored.certificate.valid_from,
                    "valid_until": stored.certificate.valid_until,
                    "predecessor_id": stored.certificate.predecessor,
                    "successor_id": stored.successor_id,
                    "status": stored.status.value,
                    "status_reason": stored.status_reason,
                    "status_changed_at": stored.status_changed_at,
                    "status_list_index": stored.certificate.status_list_index,
                    "kid": stored.kid,
                    "token": stored.token,
                    "second_kid": stored.second_kid,
                    "second_token": stored.second_token,
                    "request_id": stored.request_id,
                    "request_fingerprint": stored.request_fingerprint,
                }
                for stored in certificates
            ],
        )

    def set_status(
        self,
        certificate_id: str,
        status: CertificateStatus,
        *,
        reason: str,
        at: datetime,
        successor_id: str | None = None,
    ) -> None:
        """Change a certificate's lifecycle status.

        Raises:
            NotFound: no such certificate.
        """
        values: dict[str, Any] = {
            "status": status.value,
            "status_reason": reason,
            "status_changed_at": at,
        }
        if successor_id is not None:
            values["successor_id"] = successor_id
        result = self._session.execute(
            sa.update(CertificateRow).where(CertificateRow.id == certificate_id).values(**values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"no certificate {certificate_id}")

    def keys_of(self, owner: str) -> list[StoredKey]:
        """Every key of `owner`, share-locked: a rotation waits for this transaction."""
        rows = self._session.scalars(
            sa.select(SigningKeyRow)
            .where(SigningKeyRow.owner == owner)
            .order_by(SigningKeyRow.not_before, SigningKeyRow.kid)
            .with_for_update(read=True)
        )
        return [_key_from_row(row) for row in rows]

    def all_keys(self) -> list[StoredKey]:
        """Every key, locked for update (key lifecycle changes run one at a time)."""
        rows = self._session.scalars(
            sa.select(SigningKeyRow)
            .order_by(SigningKeyRow.not_before, SigningKeyRow.kid)
            .with_for_update()
        )
        return [_key_from_row(row) for row in rows]

    def insert_key(self, key: StoredKey) -> None:
        """Store a new key (its private part encrypted or external)."""
        self._session.add(
            SigningKeyRow(
                kid=key.kid,
                owner=key.owner,
                issuer_department=key.issuer_department,
                alg=key.alg.value,
                public_jwk=dict(key.public_jwk),
                material_kind=key.material_kind,
                private_material=key.private_material,
                status=key.status.value,
                not_before=key.not_before,
                not_after=key.not_after,
                compromised_since=key.compromised_since,
                created_at=key.created_at,
            )
        )
        self._session.flush()

    def update_key_lifecycle(
        self,
        kid: str,
        *,
        status: KeyStatus,
        not_after: datetime | None,
        compromised_since: datetime | None,
    ) -> None:
        """Record a key's new lifecycle state.

        Raises:
            NotFound: no such key.
        """
        result = self._session.execute(
            sa.update(SigningKeyRow)
            .where(SigningKeyRow.kid == kid)
            .values(status=status.value, not_after=not_after, compromised_since=compromised_since)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"no signing key {kid}")

    def count_signed_since(self, kid: str, since: datetime) -> int:
        """How many stored certificates `kid` signed with an issue time at or after `since`."""
        return int(
            self._session.scalar(
                sa.select(sa.func.count())
                .select_from(CertificateRow)
                .where(
                    sa.or_(CertificateRow.kid == kid, CertificateRow.second_kid == kid),
                    CertificateRow.issued_at >= since,
                )
            )
            or 0
        )

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append to the audit chain in this transaction."""
        append_in(self._session.connection(), entries, hash_name=self._audit_hash.value)


class CertificateStore:
    """Certificates, signing keys and status-list state. Safe to share between threads."""

    def __init__(
        self,
        database: Database,
        *,
        status_list_uri: str | None = None,
        audit_hash: HashAlg = HashAlg.SHA256,
    ) -> None:
        """`status_list_uri` is written once, when the state row is first made;
        `audit_hash` hashes the audit entries its actions append (SM3 under GM)."""
        self._database = database
        self._status_list_uri = status_list_uri
        self._audit_hash = audit_hash

    @contextmanager
    def write(self) -> Iterator[CertificateWrite]:
        """One transaction for one lifecycle action.

        Raises:
            StoreError: the database failed; nothing of the action was stored.
        """
        with self._database.transaction() as session:
            yield CertificateWrite(session, self._status_list_uri, self._audit_hash)

    def get(self, certificate_id: str) -> StoredCertificate:
        """The certificate with this id.

        Raises:
            NotFound: no such certificate.
            StoreError: the database failed.
        """
        with self._database.transaction(readonly=True) as session:
            row = session.get(CertificateRow, certificate_id)
            if row is None:
                raise NotFound(f"no certificate {certificate_id}")
            return _certificate_from_row(row)

    def list_by_holder(self, query: HolderQuery) -> list[StoredCertificate]:
        """Up to `query.limit` of a holder's certificates, newest first.

        Raises:
            StoreError: the database failed.
        """
        statement = sa.select(CertificateRow).where(
            CertificateRow.holder_kind == query.holder_kind,
            CertificateRow.holder_value == query.holder_value,
        )
        if query.type_code is not None:
            statement = statement.where(CertificateRow.type_code == query.type_code)
        if not query.include_inactive:
            statement = statement.where(
                CertificateRow.status.in_(
                    [CertificateStatus.VALID.value, CertificateStatus.SUSPENDED.value]
                )
            )
        if query.after is not None:
            issued_at, certificate_id = query.after
            statement = statement.where(
                sa.or_(
                    CertificateRow.issued_at < issued_at,
                    sa.and_(
                        CertificateRow.issued_at == issued_at, CertificateRow.id < certificate_id
                    ),
                )
            )
        statement = statement.order_by(
            CertificateRow.issued_at.desc(), CertificateRow.id.desc()
        ).limit(query.limit)
        with self._database.transaction(readonly=True) as session:
            return [_certificate_from_row(row) for row in session.scalars(statement)]

    def iterate(self, batch: int = ITERATE_BATCH) -> Iterator[StoredCertificate]:
        """Every stored certificate, in id order, read in batches.

        Raises:
            StoreError: the database failed.
        """
        after = ""
        while True:
            with self._database.transaction(readonly=True) as session:
                rows = session.scalars(
                    sa.select(CertificateRow)
                    .where(CertificateRow.id > after)
                    .order_by(CertificateRow.id)
                    .limit(batch)
                ).all()
                found = [_certificate_from_row(row) for row in rows]
            if not found:
                return
            yield from found
            after = found[-1].id

    def status_entries(self) -> list[tuple[int, CertificateStatus]]:
        """(status-list index, status) of every certificate that is not VALID.

        Raises:
            StoreError: the database failed.
        """
        with self._database.transaction(readonly=True) as session:
            rows = session.execute(
                sa.select(CertificateRow.status_list_index, CertificateRow.status).where(
                    CertificateRow.status != CertificateStatus.VALID.value
                )
            )
            return [(int(index), CertificateStatus(status)) for index, status in rows]

    def state(self) -> CertificateState:
        """The hub-wide state (all zero before the first write).

        Raises:
            StoreError: the database failed.
        """
        with self._database.transaction(readonly=True) as session:
            row = session.get(CertificateStateRow, STATE_ROW_ID)
            if row is None:
                return CertificateState(0, 0, 0, self._status_list_uri)
            return _state_from_row(row)

    def signing_keys(self) -> list[StoredKey]:
        """Every signing key, oldest first.

        Raises:
            StoreError: the database failed.
        """
        with self._database.transaction(readonly=True) as session:
            rows = session.scalars(
                sa.select(SigningKeyRow).order_by(SigningKeyRow.not_before, SigningKeyRow.kid)
            )
            return [_key_from_row(row) for row in rows]
