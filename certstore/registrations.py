"""Adapter registrations: which adapters the hub consults, persisted across restarts.

A registration stores the adapter's declaration as a JSON document in the shape of
the configuration file's ``[[adapters]]`` entries, with where it came from (the
configuration or a run-time `AdapterRegistry.Register`) and its heartbeat times.

With a `FieldCipher` the declaration's ``options`` (where tokens, passwords and URLs
with credentials live) are sealed at rest like cached record fields, bound to the
adapter id; rows stored in clear or under an older key are re-sealed by `reseal()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from certstore.database import Database, insert_for
from certstore.field_cipher import FieldCipher
from certstore.models import AdapterRegistrationRow
from domain.errors import NotFound

ORIGIN_CONFIG = "config"
ORIGIN_REGISTERED = "registered"


@dataclass(frozen=True)
class Registration:
    """One adapter registration as stored."""

    adapter_id: str
    declaration: Mapping[str, Any]
    origin: str
    registered_at: datetime
    updated_at: datetime
    last_heartbeat_at: datetime | None = None


def registration_context(adapter_id: str) -> bytes:
    """The additional authenticated data that binds sealed options to their adapter."""
    return b"adapter-registration\x1f" + adapter_id.encode()


def _to_registration(row: AdapterRegistrationRow, cipher: FieldCipher | None) -> Registration:
    declaration = dict(row.spec)
    options = declaration.get("options")
    if cipher is not None and isinstance(options, Mapping):
        declaration["options"] = cipher.open(options, registration_context(row.adapter_id))
    return Registration(
        adapter_id=row.adapter_id,
        declaration=declaration,
        origin=row.origin,
        registered_at=row.registered_at,
        updated_at=row.updated_at,
        last_heartbeat_at=row.last_heartbeat_at,
    )


class RegistrationRepository:
    """Stores and lists adapter registrations. Safe to share between threads."""

    def __init__(self, database: Database, cipher: FieldCipher | None = None) -> None:
        self._database = database
        self._cipher = cipher

    def _stored(self, adapter_id: str, declaration: Mapping[str, Any]) -> dict[str, Any]:
        """`declaration` as it is written: options sealed when a cipher is configured."""
        stored = dict(declaration)
        options = stored.get("options")
        if self._cipher is not None and isinstance(options, Mapping):
            stored["options"] = self._cipher.seal(options, registration_context(adapter_id))
        return stored

    def _row(self, row: AdapterRegistrationRow) -> Registration:
        return _to_registration(row, self._cipher)

    def reseal(self) -> int:
        """Seal options stored in clear or under an older key; returns how many rows."""
        if self._cipher is None:
            return 0
        changed = 0
        with self._database.transaction() as session:
            for row in session.scalars(sa.select(AdapterRegistrationRow)):
                options = row.spec.get("options")
                if isinstance(options, Mapping) and not self._cipher.is_current(options):
                    row.spec = self._stored(
                        row.adapter_id, _to_registration(row, self._cipher).declaration
                    )
                    changed += 1
        return changed

    def list(self) -> list[Registration]:
        """Every registration, ordered by adapter id. Raises `StoreError`."""
        with self._database.transaction(readonly=True) as session:
            rows = session.scalars(
                sa.select(AdapterRegistrationRow).order_by(AdapterRegistrationRow.adapter_id)
            )
            return [self._row(row) for row in rows]

    def get(self, adapter_id: str) -> Registration:
        """Raises `NotFound` when no adapter has this id, `StoreError` on failure."""
        with self._database.transaction(readonly=True) as session:
            row = session.get(AdapterRegistrationRow, adapter_id)
            if row is None:
                raise NotFound(f"no adapter {adapter_id!r} is registered")
            return self._row(row)

    def put(
        self, adapter_id: str, declaration: Mapping[str, Any], origin: str, now: datetime
    ) -> Registration:
        """Insert or replace a registration; keeps its first registration time."""
        with self._database.transaction() as session:
            insert = insert_for(session, AdapterRegistrationRow).values(
                adapter_id=adapter_id,
                spec=self._stored(adapter_id, declaration),
                origin=origin,
                registered_at=now,
                updated_at=now,
            )
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["adapter_id"],
                    set_={
                        "spec": insert.excluded.spec,
                        "origin": insert.excluded.origin,
                        "updated_at": insert.excluded.updated_at,
                    },
                )
            )
            row = session.get(AdapterRegistrationRow, adapter_id, populate_existing=True)
            assert row is not None
            return self._row(row)

    def sync_config(self, declarations: Sequence[Mapping[str, Any]], now: datetime) -> None:
        """Make the stored configuration-origin registrations equal `declarations`.

        Configured adapters replace what was stored for them; configured adapters that
        left the file are removed. Run-time registrations are left alone.
        """
        for declaration in declarations:
            self.put(str(declaration["id"]), declaration, ORIGIN_CONFIG, now)
        keep = [str(d["id"]) for d in declarations]
        with self._database.transaction() as session:
            session.execute(
                sa.delete(AdapterRegistrationRow).where(
                    AdapterRegistrationRow.origin == ORIGIN_CONFIG,
                    AdapterRegistrationRow.adapter_id.not_in(keep),
                )
            )

    def delete(self, adapter_id: str) -> None:
        """Remove a registration. Raises `NotFound` when there is none."""
        with self._database.transaction() as session:
            deleted = session.execute(
                sa.delete(AdapterRegistrationRow).where(
                    AdapterRegistrationRow.adapter_id == adapter_id
                )
            )
            if not deleted.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"no adapter {adapter_id!r} is registered")

    def heartbeat(self, adapter_id: str, now: datetime) -> Registration:
        """Record a heartbeat. Raises `NotFound` when no adapter has this id."""
        with self._database.transaction() as session:
            row = session.get(AdapterRegistrationRow, adapter_id)
            if row is None:
                raise NotFound(f"no adapter {adapter_id!r} is registered")
            row.last_heartbeat_at = now
            session.flush()
            return self._row(row)
