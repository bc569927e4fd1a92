"""Tongban's store: SQLAlchemy models, repositories and Alembic migrations.

- `certstore.database`: engines for SQLite and PostgreSQL, `Database` (units of work,
  health), and the error boundary: SQLAlchemy exceptions leave as `StoreError`.
- `certstore.models`: the tables. ORM rows never leave this package.
- `certstore.migrate`: ``upgrade`` / ``downgrade`` / ``current`` without an alembic.ini.
- `certstore.records`: `RecordRepository`, the cache of department records.
"""
