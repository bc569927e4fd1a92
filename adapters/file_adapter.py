"""The `file` adapter kind: a vertical system's periodic exports dropped in a folder.

Exports are CSV files with a header row or JSON-lines files, named so that their names
sort in the order they were written (``licenses-20240501.csv``). The adapter keeps an
in-memory `ExportIndex` of every matching file, read in name order, where a later file's
row replaces an earlier one with the same record type and source record id, and a row
marked deleted removes it. A fetch only looks at the folder's listing (names, sizes,
modification times) and rebuilds the index when that changed; reading and parsing run
in a worker thread, never on the event loop.

Change streams read the files in name order, row by row; the cursor
``<file name>:<row number>`` lets a sync job resume in the middle of a file. A CSV row
number counts data rows after the header; a JSON-lines row number is the line number.

A row that cannot be read or mapped becomes a `Rejection` kept with its file
(`FileAdapter.rejections`), and is never fatal to a fetch.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import fnmatch
import json
import os
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Self

import structlog
from pydantic import Field, field_validator, model_validator

from adapters.base import Adapter, AdapterSpec, Change, ChangeBatch, ChangeKind, Rejection
from adapters.mapping import AdapterOptions, parse_options
from domain.errors import AdapterError
from domain.records import Purpose, SourceRecord
from domain.subjects import SubjectKey

log = structlog.get_logger("tongban.adapters.file")

__all__ = ["ExportIndex", "FileAdapter", "FileOptions"]

_DEFAULT_PATTERNS: Final = {"csv": "*.csv", "jsonl": "*.jsonl"}

Row = dict[str, Any]
NumberedRow = tuple[int, Row | str]
"""A row number and the row, or the reason the row could not be read."""
Rows = Generator[NumberedRow, None, None]

Listing = tuple[tuple[str, int, int], ...]
"""The matching files as (name, modification time in ns, size), in name order."""


class FileOptions(AdapterOptions):
    """Options of a `file` adapter."""

    folder: str = Field(min_length=1)
    format: Literal["csv", "jsonl"] = "csv"
    # A glob over file names in the folder; defaults to *.csv or *.jsonl.
    pattern: str | None = None
    # utf-8 also reads files that start with a byte-order mark; gb18030 reads GBK exports.
    encoding: str = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("pattern")
    @classmethod
    def _pattern_shape(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value):
            raise ValueError("must be a file-name pattern without folders, like *.csv")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r}") from exc
        # Files are split into lines before decoding, so a bad byte spoils one row only.
        probe = b'\r\n\t,;|"{}[]:0123456789ABCXabcx'
        try:
            compatible = probe.decode(value) == probe.decode("ascii")
        except UnicodeDecodeError:
            compatible = False
        if not compatible:
            raise ValueError("must be ASCII-compatible (utf-8, gb18030, gbk, ...)")
        return value

    @model_validator(mode="after")
    def _delimiter_for_csv(self) -> Self:
        if self.format != "csv" and self.delimiter != ",":
            raise ValueError("delimiter applies to csv only")
        return self

    @property
    def glob(self) -> str:
        return self.pattern or _DEFAULT_PATTERNS[self.format]

    @property
    def read_encoding(self) -> str:
        # utf-8-sig strips a leading byte-order mark and reads plain UTF-8 unchanged.
        return "utf-8-sig" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding


@dataclass(frozen=True)
class ExportIndex:
    """Every record of the folder's exports, by subject key; built from one listing."""

    listing: Listing
    by_key: Mapping[SubjectKey, tuple[SourceRecord, ...]]
    rejected_by_key: Mapping[SubjectKey, tuple[tuple[str, Rejection], ...]]
    rejected: Mapping[str, tuple[Rejection, ...]] = field(default_factory=dict)


class FileAdapter(Adapter):
    """Answers from an index of the export files in one folder; rebuilt when they change."""

    def __init__(self, spec: AdapterSpec) -> None:
        """Raises `InvalidRequest` naming the option when the options are invalid.

        Nothing is read here: the folder is indexed by `warm_up` (the hub calls it at
        start) or else on the first fetch.
        """
        options = parse_options(FileOptions, spec.options)
        options.check_serves(spec)
        super().__init__(spec)
        self.options = options
        self.folder = Path(options.folder)
        # Builds started; a build that finds nothing changed is never started.
        self.index_builds = 0
        self._index: ExportIndex | None = None
        self._building: asyncio.Task[ExportIndex] | None = None
        self._building_listing: Listing = ()
        self._listing = asyncio.Lock()
        self._warming: asyncio.Task[None] | None = None

    @property
    def rejections(self) -> Mapping[str, tuple[Rejection, ...]]:
        """Rejected rows of the current index, by file name (empty before the first fetch)."""
        return {} if self._index is None else self._index.rejected

    async def index(self) -> ExportIndex:
        """The index of the folder as it is now; rebuilt only when the listing changed.

        A rebuild runs to its end even when the fetch that started it times out, so a
        large folder is indexed once, not restarted by every impatient caller.
        Raises `AdapterError` when the folder is missing or a file cannot be read.
        """
        async with self._listing:
            listing = await asyncio.to_thread(self._list)
            if self._index is not None and self._index.listing == listing:
                return self._index
            building = self._building
            if building is None or building.done() or self._building_listing != listing:
                building = asyncio.create_task(asyncio.to_thread(self._build, listing))
                building.add_done_callback(self._built)
                self._building, self._building_listing = building, listing
                self.index_builds += 1
        return await asyncio.shield(building)

    def _built(self, building: asyncio.Task[ExportIndex]) -> None:
        # Runs even when every caller gave up waiting: the finished index is kept.
        if building.cancelled() or building.exception() is not None:
            return
        index = building.result()
        if self._index is None or self._building is building:
            self._index = index

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord | Rejection]:
        wanted = {m.record_type for m, _ in self.options.mappings_for(subject.kind, record_types)}
        if not wanted:
            return []
        index = await self.index()
        answer: list[SourceRecord | Rejection] = [
            record for record in index.by_key.get(subject, ()) if record.record_type in wanted
        ]
        answer.extend(
            rejection
            for record_type, rejection in index.rejected_by_key.get(subject, ())
            if record_type in wanted
        )
        return answer

    def warm_up(self) -> None:
        """Index the folder in the background now, so that the first lookup after the
        hub starts finds the index (or a build well under way) instead of starting one
        inside its caller's deadline. A failure is logged; the first fetch reports it."""
        if self._warming is None:
            self._warming = asyncio.create_task(self._warm())

    async def _warm(self) -> None:
        try:
            await self.index()
        except AdapterError as exc:
            log.warning(
                "file adapter not indexed at start", adapter=self.adapter_id, error=exc.message
            )

    async def close(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        self._warming = None
        # The worker thread cannot be stopped; its result is simply not waited for.
        if self._building is not None and not self._building.done():
            self._building.cancel()
        self._building = None

    async def _changes(self, cursor: str | None, batch_size: int) -> AsyncIterator[ChangeBatch]:
        start_name, start_row = self._parse_cursor(cursor)
        listing = await asyncio.to_thread(self._list)
        batch_size = max(1, batch_size)
        # A cheap estimate for the progress bar: lines left in the files still to read.
        remaining = await asyncio.to_thread(self._estimate_changes, listing, start_name, start_row)
        for name, _, _ in listing:
            if name < start_name:
                continue
            # Row 0 is the CSV header: a problem with it is reported once, too.
            after = start_row if name == start_name else -1
            rows = self._open(name)
            try:
                while True:
                    chunk, exhausted = await asyncio.to_thread(_take, rows, batch_size, after)
                    if chunk:
                        changes = tuple(self._changes_of(name, chunk))
                        remaining = max(remaining, len(changes))
                        yield ChangeBatch(changes, f"{name}:{chunk[-1][0]}", remaining)
                        remaining -= len(changes)
                    if exhausted:
                        break
            finally:
                await asyncio.to_thread(rows.close)

    # --- in worker threads ---------------------------------------------------------------

    def _estimate_changes(self, listing: Listing, start_name: str, start_row: int) -> int:
        """About how many changes are left from (`start_name`, `start_row`) on: the
        files' line counts (less a CSV header), once per mapping. Counting newlines is
        fast and reads nothing into memory; quoted line breaks make it an overestimate."""
        lines = 0
        header = 1 if self.options.format == "csv" else 0
        for name, _, _ in listing:
            if name < start_name:
                continue
            counted = _count_lines(self.folder / name) - header
            if name == start_name:
                counted -= start_row
            lines += max(0, counted)
        return lines * len(self.options.mappings)

    def _list(self) -> Listing:
        try:
            entries = list(os.scandir(self.folder))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise AdapterError(
                self.adapter_id, f"export folder {self.folder} does not exist"
            ) from exc
        except PermissionError as exc:
            raise AdapterError(self.adapter_id, f"export folder {self.folder}: no access") from exc
        except OSError as exc:
            raise AdapterError(
                self.adapter_id, f"export folder {self.folder}: {exc.strerror}", retryable=True
            ) from exc
        listing: list[tuple[str, int, int]] = []
        for entry in entries:
            if not fnmatch.fnmatchcase(entry.name, self.options.glob):
                continue
            try:
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except FileNotFoundError:  # removed while listing: it is simply not there
                continue
            listing.append((entry.name, stat.st_mtime_ns, stat.st_size))
        return tuple(sorted(listing))

    def _build(self, listing: Listing) -> ExportIndex:
        records: dict[tuple[str, str], SourceRecord] = {}
        rejected: dict[str, tuple[Rejection, ...]] = {}
        rejected_by_key: dict[SubjectKey, list[tuple[str, Rejection]]] = {}
        for name, _, _ in listing:
            problems: list[Rejection] = []
            rows = self._open(name)
            try:
                for number, row in rows:
                    where = f"{name}:{number}"
                    if isinstance(row, str):
                        problems.append(Rejection(where, row))
                        continue
                    for mapping in self.options.mappings:
                        if mapping.is_deletion(row):
                            change = mapping.map_change(row, where=where)
                            records.pop((mapping.record_type, change.source_record_id), None)
                            continue
                        mapped = mapping.map_row(row, where=where)
                        if isinstance(mapped, SourceRecord):
                            records[(mapped.record_type, mapped.source_record_id)] = mapped
                            continue
                        problems.append(mapped)
                        key = mapping.subject_of(row)
                        if key is not None:
                            rejected_by_key.setdefault(key, []).append(
                                (mapping.record_type, mapped)
                            )
            finally:
                rows.close()
            if problems:
                rejected[name] = tuple(problems)
        by_key: dict[SubjectKey, list[SourceRecord]] = {}
        for record in records.values():
            keys = dict.fromkeys(
                (record.subject, *record.related_subjects, *record.subject.related())
            )
            for key in keys:
                by_key.setdefault(key, []).append(record)
        return ExportIndex(
            listing,
            {key: tuple(found) for key, found in by_key.items()},
            {key: tuple(found) for key, found in rejected_by_key.items()},
            rejected,
        )

    def _open(self, name: str) -> Rows:
        """The file's rows; the file is opened on the first row and closed at the end."""
        path = self.folder / name
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            # An export replaced between listing and reading: the next call sees the new one.
            raise AdapterError(
                self.adapter_id, f"{name} vanished while reading", retryable=True
            ) from exc
        except OSError as exc:
            raise AdapterError(self.adapter_id, f"cannot read {name}: {exc.strerror}") from exc
        with handle:
            text = _Decoded(handle, self.options.read_encoding, self.options.encoding)
            if self.options.format == "csv":
                yield from _csv_rows(text, self.options.delimiter)
            else:
                yield from _jsonl_rows(text)

    def _changes_of(self, name: str, chunk: Sequence[NumberedRow]) -> Iterator[Change]:
        for number, row in chunk:
            where = f"{name}:{number}"
            for mapping in self.options.mappings:
                if isinstance(row, str):
                    yield Change(ChangeKind.REJECTED, mapping.record_type, where, reason=row)
                else:
                    yield mapping.map_change(row, where=where)

    def _parse_cursor(self, cursor: str | None) -> tuple[str, int]:
        if not cursor:
            return "", 0
        name, _, number = cursor.rpartition(":")
        if not name or not number.isdigit():
            raise AdapterError(self.adapter_id, f"cursor {cursor!r} is not <file name>:<row>")
        return name, int(number)


def _count_lines(path: Path) -> int:
    """Lines in the file (a last line without a newline counts); 0 when unreadable."""
    count, last = 0, b"\n"
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                count += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return 0  # reading it reports the problem
    return count + (last != b"\n")


def _take(rows: Rows, size: int, after: int) -> tuple[list[NumberedRow], bool]:
    """Up to `size` rows numbered above `after`, and whether the file is exhausted."""
    chunk: list[NumberedRow] = []
    for number, row in rows:
        if number <= after:
            continue
        chunk.append((number, row))
        if len(chunk) == size:
            return chunk, False
    return chunk, True


class _Decoded:
    """The lines of a binary file, decoded one by one; remembers which would not decode."""

    def __init__(self, handle: BinaryIO, codec: str, encoding: str) -> None:
        self.handle = handle
        self.codec = codec
        self.problem = f"not {encoding} text"
        self.bad: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self.handle, start=1):
            try:
                yield raw.decode(self.codec)
            except UnicodeDecodeError:
                self.bad.add(number)
                yield raw.decode(self.codec, errors="replace")


def _csv_rows(text: _Decoded, delimiter: str) -> Iterator[NumberedRow]:
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield 0, f"the header is not CSV: {exc}"
        return
    if header is None:
        return
    if text.bad:
        yield 0, f"the header is {text.problem}"
        return
    names = [name.strip() for name in header]
    if "" in names or len(set(names)) != len(names):
        yield 0, "the header has empty or repeated column names"
        return
    number = 0
    last_line = reader.line_num
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last_line = reader.line_num
            yield number, f"not CSV: {exc}"
            continue
        # A quoted field may span lines: the row is bad if any of its lines is.
        lines = range(last_line + 1, reader.line_num + 1)
        last_line = reader.line_num
        if not any(cells):
            continue
        if any(line in text.bad for line in lines):
            yield number, text.problem
            continue
        if len(cells) != len(names):
            yield number, f"the row has {len(cells)} fields, the header {len(names)}"
            continue
        # CSV has no null: an empty cell is a missing value.
        yield (
            number,
            {name: (cell if cell != "" else None) for name, cell in zip(names, cells, strict=True)},
        )


def _jsonl_rows(text: _Decoded) -> Iterator[NumberedRow]:
    for number, line in enumerate(text, start=1):
        if number in text.bad:
            yield number, text.problem
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            yield number, f"not JSON: {getattr(exc, 'msg', exc)}"
            continue
        if not isinstance(value, dict):
            yield number, "not a JSON object"
            continue
        yield number, value
