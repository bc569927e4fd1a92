"""Alembic migrations of the store; run them through `certstore.migrate`."""
