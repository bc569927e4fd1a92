"""When each adapter's sync cursor last advanced (for the operator's lag metric)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from certstore.database import Database
from certstore.models import SyncCursorRow


def last_synced(database: Database) -> dict[str, datetime]:
    """Adapter id → when its sync cursor was last committed. Raises `StoreError`."""
    with database.transaction(readonly=True) as session:
        rows = session.execute(sa.select(SyncCursorRow.adapter_id, SyncCursorRow.updated_at))
        return {row.adapter_id: row.updated_at for row in rows}
