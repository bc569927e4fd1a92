"""Engine construction, URL rules, SQLite connection settings and error descriptions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from certstore.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    Database,
    create_engine_for,
    default_sqlite_url,
    describe_error,
)
from domain.errors import ConfigError


def test_default_sqlite_url_is_an_absolute_file_in_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    url = default_sqlite_url(Path("data"))

    assert url == f"sqlite:///{tmp_path.resolve()}/data/tongban.db"
    assert sa.make_url(url).database == str(tmp_path.resolve() / "data" / "tongban.db")


def test_sqlite_engine_creates_the_parent_folder(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "deeper" / "tongban.db"

    engine = create_engine_for(f"sqlite:///{target}")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()

    assert target.is_file()


def test_sqlite_connections_are_configured_on_connect(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'tongban.db'}")
    try:
        with engine.connect() as connection:

            def pragma(name: str) -> object:
                return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == SQLITE_BUSY_TIMEOUT_MS
            assert pragma("synchronous") == 1  # NORMAL
    finally:
        engine.dispose()


def test_sqlite_write_transactions_begin_immediate(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'tongban.db'}")
    try:
        probe = sqlite3.connect(tmp_path / "tongban.db", isolation_level=None, timeout=0)
        try:
            # The write lock is held from BEGIN on, before any statement ran.
            with (
                database.transaction(),
                pytest.raises(sqlite3.OperationalError, match="locked"),
            ):
                probe.execute("BEGIN IMMEDIATE")
            with database.transaction(readonly=True):
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
        finally:
            probe.close()
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("sqlite://", "must be a file"),
        ("sqlite:///:memory:", "must be a file"),
        ("mysql+pymysql://user@host/db", "unsupported database 'mysql\\+pymysql'"),
        ("postgresql+psycopg2://user@host/db", "unsupported database"),
        ("not a url", "is not a database URL"),
    ],
    ids=["sqlite-memory-implicit", "sqlite-memory", "mysql", "psycopg2", "garbage"],
)
def test_unsupported_urls_are_config_errors(url: str, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule) as raised:
        create_engine_for(url)

    assert raised.value.setting == "database.url"


def test_postgresql_urls_use_psycopg_with_pre_ping_and_a_connect_timeout() -> None:
    engine = create_engine_for("postgresql://postgres@db.invalid/tongban")

    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.pool._pre_ping
    assert engine.url.query["connect_timeout"] == "10"
    assert create_engine_for("postgresql+psycopg://h/db?connect_timeout=3").url.query == {
        "connect_timeout": "3"
    }


def test_describe_error_keeps_only_the_first_line_of_the_driver_message() -> None:
    class DriverError(Exception):
        pass

    error = OperationalError(
        "INSERT ... (secret parameters)",
        {"value": "11010519491231002X"},
        DriverError("duplicate key\nDETAIL:  Key (value)=(11010519491231002X) exists."),
    )

    assert describe_error(error) == "DriverError: duplicate key"
