"""Fixtures shared by the whole suite: an empty database per test, on every backend.

A test that asks for `database_url` (or `database`, built on it) runs once per backend:
``sqlite`` always, on a fresh file in the test's temporary folder, and ``postgresql``
only when ``TONGBAN_TEST_DATABASE_URL`` names a server. On PostgreSQL each test gets a
schema of its own (``t_<hex>``), selected through the URL's ``search_path`` option and
dropped afterwards, so tests never see each other's rows and can run in parallel.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from certstore import migrate
from certstore.database import Database, create_engine_for

POSTGRES_URL_ENV = "TONGBAN_TEST_DATABASE_URL"
MYSQL_URL_ENV = "TONGBAN_TEST_MYSQL_URL"
"""A MariaDB/MySQL server (``mysql+pymysql://root@127.0.0.1:3306``) for department databases."""
BACKENDS = ("sqlite", "postgresql")


def _postgres_base_url() -> str | None:
    return os.environ.get(POSTGRES_URL_ENV) or None


def _mysql_base_url() -> str | None:
    return os.environ.get(MYSQL_URL_ENV) or None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    params = [pytest.param("sqlite", id="sqlite")]
    if _postgres_base_url() is not None:
        params.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))
    if "mariadb" in getattr(metafunc.module, "EXTRA_BACKENDS", ()):
        # Department databases (the sql adapter's tests), not the hub's own store.
        reason = f"{MYSQL_URL_ENV} is not set (MariaDB/MySQL server for the sql adapter)"
        skip = [] if _mysql_base_url() else [pytest.mark.skip(reason=reason)]
        params.append(pytest.param("mariadb", id="mariadb", marks=skip))
    metafunc.parametrize("database_url", params, indirect=True)


@pytest.fixture(scope="session")
def postgres_admin_engine() -> Iterator[Engine]:
    """An engine on the server named by ``TONGBAN_TEST_DATABASE_URL``, for schema chores."""
    base_url = _postgres_base_url()
    if base_url is None:
        pytest.fail(f"{POSTGRES_URL_ENV} is not set")
    engine = create_engine_for(base_url)
    yield engine
    engine.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that lives for one test (``sqlite`` or ``postgresql``)."""
    backend: str = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tongban.db'}"
        return
    if backend == "mariadb":
        yield from _mysql_database()
        return
    admin: Engine = request.getfixturevalue("postgres_admin_engine")
    schema = f"t_{uuid.uuid4().hex}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    _drop_schema(admin, schema)


def _mysql_database() -> Iterator[str]:
    """A database of the test's own on the MariaDB/MySQL server, dropped afterwards."""
    base = sa.make_url(_mysql_base_url() or "")
    name = f"t_{uuid.uuid4().hex}"
    admin = sa.create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield base.set(database=name, query={"charset": "utf8mb4"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


def _drop_schema(admin: Engine, schema: str) -> None:
    # A connection a test forgot to close would block the drop forever; give up instead.
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    except sa.exc.OperationalError as exc:
        warnings.warn(f"could not drop test schema {schema}: {exc}", stacklevel=1)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A `Database` on an empty database migrated to the newest schema."""
    migrate.upgrade(database_url)
    db = Database.from_url(database_url)
    yield db
    db.dispose()


TongbanCli = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def tongban_cli() -> TongbanCli:
    """Run the `tongban` command (wide terminal, so tables are not wrapped) in a thread:
    a hub under test answers on the test's event loop meanwhile."""
    command = str(Path(sys.executable).parent / "tongban")
    wide = {**os.environ, "COLUMNS": "200"}

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [command, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=wide,
        )

    return run
