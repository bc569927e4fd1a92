"""Fixtures of the sync tests: sources next to an empty store, on every backend."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import Settings, load_settings

# `--import-mode=importlib` keeps test folders off sys.path; the sync tests share
# builders through `sync_testkit` (a name no other folder uses), so put this one back.
sys.path.insert(0, str(Path(__file__).parent))

from sync_testkit import (
    DEPARTMENT,
    FIELDS,
    FILE_ADAPTER,
    FILE_MAPPING,
    RECORD_TYPE,
    SOURCE_TABLE,
    SQL_ADAPTER,
    SQL_MAPPING,
    SqlSource,
)


@pytest.fixture(autouse=True)
def _logging_to_the_real_stderr() -> Iterator[None]:
    # In-process CLI runs configure logging onto the test runner's captured stream,
    # which is closed afterwards: start every test from structlog's defaults.
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """An empty folder a `file` adapter reads exports from."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


@pytest.fixture
def sql_source(database_url: str, tmp_path: Path) -> Iterator[SqlSource]:
    """A department table: a SQLite file, or on PostgreSQL a table in the test's schema."""
    url = database_url if database_url.startswith("postgresql") else f"sqlite:///{tmp_path}/dept.db"
    source = SqlSource(url)
    yield source
    source.dispose()


StartHub = Callable[..., Awaitable[HubServer]]


def hub_settings(database_url: str, data_dir: Path, **sync: Any) -> Settings:
    """A hub with the `file` adapter on `data_dir/exports` and the `sql` adapter on
    `data_dir/dept.db`, and quick sync polling; `sync` adds to ``[sync]``."""
    return load_settings(
        None,
        data_dir=str(data_dir),
        record_types={RECORD_TYPE: {"fields": dict(FIELDS)}},
        adapters=[
            {
                "id": FILE_ADAPTER,
                "kind": "file",
                "department": DEPARTMENT,
                "serves": [{"record_type": RECORD_TYPE, "key_kinds": ["ID_CARD"]}],
                "options": {"folder": str(data_dir / "exports"), "mappings": [FILE_MAPPING]},
            },
            {
                "id": SQL_ADAPTER,
                "kind": "sql",
                "department": DEPARTMENT,
                "serves": [{"record_type": RECORD_TYPE, "key_kinds": ["ID_CARD"]}],
                "options": {
                    "url": f"sqlite:///{data_dir / 'dept.db'}",
                    "table": SOURCE_TABLE,
                    "mappings": [SQL_MAPPING],
                    "changes": {"cursor_columns": ["updated_at", "id"]},
                },
            },
        ],
        sync={"poll_seconds": 0.1, "heartbeat_seconds": 0.5, "lease_seconds": 5, **sync},
        **{"database.url": database_url, "logging.level": "WARNING"},
    )


@pytest.fixture
async def start_hub(database_url: str, tmp_path: Path) -> AsyncIterator[StartHub]:
    """Start an in-process hub on the test's database (see `hub_settings`)."""
    started: list[HubServer] = []
    (tmp_path / "exports").mkdir(exist_ok=True)

    async def start(**sync: Any) -> HubServer:
        server = HubServer(Hub.open(hub_settings(database_url, tmp_path, **sync)), "127.0.0.1:0")
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(grace=0.5)
