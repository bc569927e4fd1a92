"""A CSV export with 1% malformed rows syncs to the end with exactly those rows
dead-lettered, each with its reason (and the raw row when there was one)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sync_testkit import (
    FILE_ADAPTER,
    HEADER,
    Row,
    expected_content,
    file_adapter,
    rows,
    run_job,
    store_content,
    write_export,
)

from certstore.database import Database
from certstore.sync_jobs import SyncJobRepository
from domain.sync_jobs import JobState, SyncMode

SOURCE_ROWS = 10_000
EXPORT = "enrolment-0001.csv"


def csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()


def malformed(row: Row, kind: int) -> tuple[str, str, str]:
    """(CSV line, dead letter's source record id, reason) of one broken row."""
    cells = row.csv_cells()
    if kind == 0:  # the check character of the ID number is wrong
        right = cells[1][-1]
        wrong = "0" if right != "0" else "1"
        cells[1] = cells[1][:-1] + wrong
        reason = (
            f"key field '证件号码': ID_CARD: check character must be '{right}' "
            f"(ISO 7064 MOD 11-2), got '{wrong}'"
        )
        return csv_line(cells), row.record_id, reason
    if kind == 1:  # no such month
        cells[4] = "2020-13-45"
        reason = "field 'since' (from '参保日期'): '2020-13-45' is not a date"
        return csv_line(cells), row.record_id, reason
    if kind == 2:  # no record id
        cells[0] = ""
        return csv_line(cells), "", "id field '参保编号' is missing or empty"
    # A truncated line: the row cannot even be read as the header says.
    return csv_line(cells[:4]), "", f"the row has 4 fields, the header {len(HEADER)}"


async def test_exactly_the_malformed_rows_are_dead_lettered_with_their_reasons(
    database: Database, exports: Path
) -> None:
    source = rows(SOURCE_ROWS)
    good: list[Row] = []
    lines: list[str] = []
    expected: dict[str, str] = {}
    for row in source:
        if row.index % 100 == 37:
            line, record_id, reason = malformed(row, row.index // 100 % 4)
            # Rows are numbered after the header; rows without an id go by position.
            expected[record_id or f"{EXPORT}:{len(lines) + 1}"] = reason
            lines.append(line)
        else:
            good.append(row)
            lines.append(csv_line(row.csv_cells()))
    write_export(exports / EXPORT, [], raw_lines=lines)

    job = await run_job(database, file_adapter(exports), SyncMode.FULL)

    assert job.state is JobState.SUCCEEDED, job.error
    assert job.progress.records_seen == SOURCE_ROWS
    assert (job.progress.applied, job.progress.dead_lettered) == (len(good), SOURCE_ROWS // 100)
    assert store_content(database, FILE_ADAPTER) == expected_content(good)
    letters = SyncJobRepository(database).dead_letters(FILE_ADAPTER, limit=1000)
    found = {letter.source_record_id: letter for letter in letters}
    assert {key: letter.reason for key, letter in found.items()} == expected
    for letter in letters:
        # Rows the mapping refused keep the raw row; unreadable lines have none to keep.
        unreadable = letter.reason.startswith("the row has")
        assert (letter.raw is None) is unreadable
        assert letter.job_id == job.job_id

    again = await run_job(database, file_adapter(exports), SyncMode.FULL)

    # Syncing the same export again keeps one dead letter per bad row, not two.
    assert again.progress.dead_lettered == SOURCE_ROWS // 100
    assert len(SyncJobRepository(database).dead_letters(FILE_ADAPTER, limit=1000)) == len(expected)
