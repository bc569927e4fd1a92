"""Department signatures of cached records, kept beside the records they sign.

A record served from the store (stale) still proves its origin: its department's JWS
is stored when the record is fetched and handed back with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from certstore.database import Database, insert_for
from certstore.models import ADAPTER_ID_LENGTH, RECORD_TYPE_LENGTH, Base
from domain.records import SourceRecord

RecordIdentity = tuple[str, str, str]  # adapter id, record type, source record id


class RecordSignatureRow(Base):
    __tablename__ = "record_signatures"

    adapter_id: Mapped[str] = mapped_column(sa.String(ADAPTER_ID_LENGTH), primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(RECORD_TYPE_LENGTH), primary_key=True)
    source_record_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    signature: Mapped[str] = mapped_column(sa.Text)


def replace_in(
    session: Session,
    adapter_id: str,
    upserts: Sequence[SourceRecord],
    deletions: Iterable[tuple[str, str]],
) -> None:
    """In a sync batch's transaction: the upserted records' signatures replace the stored
    ones (an unsigned upsert and a deletion drop theirs, so no signature outlives the
    content it signed)."""
    gone = [(r.record_type, r.source_record_id) for r in upserts] + list(deletions)
    if gone:
        session.execute(
            sa.delete(RecordSignatureRow).where(
                RecordSignatureRow.adapter_id == adapter_id,
                sa.tuple_(RecordSignatureRow.record_type, RecordSignatureRow.source_record_id).in_(
                    gone
                ),
            )
        )
    rows = [
        {
            "adapter_id": adapter_id,
            "record_type": r.record_type,
            "source_record_id": r.source_record_id,
            "signature": r.signature,
        }
        for r in upserts
        if r.signature
    ]
    if rows:
        session.execute(sa.insert(RecordSignatureRow), rows)


class RecordSignatures:
    """Stores and finds department signatures. Safe to share between threads."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def keep(self, signatures: Mapping[RecordIdentity, str]) -> None:
        """Store (or replace) signatures. Raises `StoreError`."""
        if not signatures:
            return
        with self._database.transaction() as session:
            for (adapter_id, record_type, source_record_id), signature in signatures.items():
                statement = insert_for(session, RecordSignatureRow).values(
                    adapter_id=adapter_id,
                    record_type=record_type,
                    source_record_id=source_record_id,
                    signature=signature,
                )
                session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["adapter_id", "record_type", "source_record_id"],
                        set_={"signature": signature},
                    )
                )

    def find(self, identities: Iterable[RecordIdentity]) -> dict[RecordIdentity, str]:
        """The stored signatures of these records (those that have one). Raises `StoreError`."""
        wanted = list(dict.fromkeys(identities))
        if not wanted:
            return {}
        with self._database.transaction(readonly=True) as session:
            rows = session.execute(
                sa.select(RecordSignatureRow).where(
                    sa.or_(
                        *(
                            sa.and_(
                                RecordSignatureRow.adapter_id == a,
                                RecordSignatureRow.record_type == t,
                                RecordSignatureRow.source_record_id == s,
                            )
                            for a, t, s in wanted
                        )
                    )
                )
            ).scalars()
            return {(r.adapter_id, r.record_type, r.source_record_id): r.signature for r in rows}
