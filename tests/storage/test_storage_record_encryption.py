"""Cached record fields sealed at rest with AES-GCM, rotated lazily, tamper-evident."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from certstore.database import Database
from certstore.field_cipher import SM4_GCM, FieldCipher
from certstore.records import RecordRepository, prepare_records
from domain.crypto import HashAlg
from domain.errors import StoreError
from domain.records import SourceRecord, content_hash
from domain.subjects import KeyKind, parse_key

PERSON = parse_key(KeyKind.ID_CARD, "11010519491231002X")
OLD = bytes(range(32))
NEW = bytes(range(32, 64))
FIELDS = {"name": "王伟", "household_address": "北京市西城区某街道12号"}


def record(source_id: str = "R1") -> SourceRecord:
    return SourceRecord("population.resident", source_id, PERSON, FIELDS)


def raw_fields(database: Database) -> list[str]:
    with database.core_transaction() as connection:
        return [
            json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
            for value in connection.execute(sa.text("SELECT fields FROM records ORDER BY id"))
            .scalars()
            .all()
        ]


def test_fields_are_sealed_at_rest_and_read_back_plain(database: Database) -> None:
    repository = RecordRepository(database, FieldCipher({"k1": OLD}, "k1"))
    (stored,) = repository.upsert_records("psb", "公安局", [record()], datetime.now(UTC))
    (at_rest,) = raw_fields(database)
    assert "王伟" not in at_rest
    assert "A256GCM" in at_rest
    (found,) = repository.find(PERSON)
    assert found.fields == FIELDS
    assert found.content_hash == stored.content_hash


def test_rotation_reseals_lazily_on_read(database: Database) -> None:
    RecordRepository(database, FieldCipher({"k1": OLD}, "k1")).upsert_records(
        "psb", "公安局", [record()], datetime.now(UTC)
    )
    rotated = RecordRepository(database, FieldCipher({"k1": OLD, "k2": NEW}, "k2"))
    assert json.loads(raw_fields(database)[0])["kid"] == "k1"
    assert rotated.find(PERSON)[0].fields == FIELDS
    assert json.loads(raw_fields(database)[0])["kid"] == "k2"
    only_new = RecordRepository(database, FieldCipher({"k2": NEW}, "k2"))
    assert only_new.find(PERSON)[0].fields == FIELDS


def test_plain_rows_from_before_encryption_are_sealed_when_read(database: Database) -> None:
    RecordRepository(database).upsert_records("psb", "公安局", [record()], datetime.now(UTC))
    assert "王伟" in raw_fields(database)[0]
    assert (
        RecordRepository(database, FieldCipher({"k1": OLD}, "k1")).find(PERSON)[0].fields == FIELDS
    )
    assert "王伟" not in raw_fields(database)[0]


def test_tampered_or_moved_ciphertext_is_refused(database: Database) -> None:
    repository = RecordRepository(database, FieldCipher({"k1": OLD}, "k1"))
    repository.upsert_records("psb", "公安局", [record("R1"), record("R2")], datetime.now(UTC))
    with database.core_transaction() as connection:
        first = connection.execute(
            sa.text("SELECT fields FROM records WHERE source_record_id='R1'")
        ).scalar_one()
        sealed = first if isinstance(first, dict) else json.loads(first)
        # Move R1's sealed fields onto R2: the ciphertext is bound to its record.
        connection.execute(
            sa.text("UPDATE records SET fields = :f WHERE source_record_id = 'R2'"),
            {"f": json.dumps(sealed)},
        )
    with pytest.raises(StoreError, match="integrity"):
        repository.find(PERSON)
    with database.core_transaction() as connection:
        flipped = dict(sealed, ct=base64.b64encode(b"x" * 40).decode())
        connection.execute(sa.text("UPDATE records SET fields = :f"), {"f": json.dumps(flipped)})
    with pytest.raises(StoreError, match="integrity"):
        repository.find(PERSON)


# --- the GM suite: SM4-GCM sealing and SM3 content hashes ---------------------------


def test_the_gm_suite_seals_with_sm4_gcm_and_hashes_with_sm3(database: Database) -> None:
    repository = RecordRepository(database, FieldCipher({"k1": OLD}, "k1", SM4_GCM), HashAlg.SM3)
    (stored,) = repository.upsert_records("psb", "公安局", [record()], datetime.now(UTC))
    assert stored.content_hash == content_hash(FIELDS, HashAlg.SM3)
    assert stored.content_hash.startswith("sm3:")
    (at_rest,) = raw_fields(database)
    assert "王伟" not in at_rest
    assert json.loads(at_rest)["$sealed"] == "SM4GCM"
    (found,) = repository.find(PERSON)
    assert found.fields == FIELDS
    assert found.content_hash == stored.content_hash
    # The sync path's row builder hashes alike.
    (prepared,) = prepare_records("psb", "公安局", [record()], datetime.now(UTC), HashAlg.SM3)
    assert prepared.row["content_hash"] == stored.content_hash


def test_switching_to_gm_reads_old_rows_and_reseals_them_lazily(database: Database) -> None:
    international = RecordRepository(database, FieldCipher({"k1": OLD}, "k1"))
    (old,) = international.upsert_records("psb", "公安局", [record()], datetime.now(UTC))
    assert old.content_hash.startswith("sha256:")
    gm = RecordRepository(database, FieldCipher({"k1": OLD}, "k1", SM4_GCM), HashAlg.SM3)
    (found,) = gm.find(PERSON)
    assert found.fields == FIELDS
    assert found.content_hash == old.content_hash  # history is not rewritten
    assert json.loads(raw_fields(database)[0])["$sealed"] == "SM4GCM"
    # ...and the international hub can still open what the GM one sealed.
    assert international.find(PERSON)[0].fields == FIELDS


def test_sm4_gcm_refuses_tampering_and_the_wrong_cipher_name() -> None:
    cipher = FieldCipher({"k1": OLD}, "k1", SM4_GCM)
    context = b"psb\x1fpopulation.resident\x1fR1"
    sealed = cipher.seal(FIELDS, context)
    assert cipher.open(sealed, context) == FIELDS
    with pytest.raises(StoreError, match="integrity"):
        cipher.open(sealed, b"psb\x1fpopulation.resident\x1fR2")
    # Claiming AES for an SM4 ciphertext does not open it either.
    with pytest.raises(StoreError, match="integrity"):
        cipher.open({**sealed, "$sealed": "A256GCM"}, context)
