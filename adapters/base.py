"""The adapter contract: how the hub reaches one department system.

The public `Adapter.fetch()` owns the timeout, the bounded retries, the concurrency
limit, the circuit breaker, health bookkeeping and error conversion; a subclass writes
only `_fetch()` (and `_changes()` when the source can stream changes for sync jobs).
Every failure below this boundary becomes `AdapterError(...) from exc`, so nothing
above it sees a driver's or a client library's exception.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import enum
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from adapters.resilience import CircuitBreaker, CircuitState, RetryPolicy
from domain.errors import AdapterError, AdapterTimeout, TongbanError
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, SubjectKey
from signing.department import check_record_signature
from signing.trust import TrustedKey

log = structlog.get_logger("tongban.adapters")


class ConnectGuard(Protocol):
    """Decides where a run-time registered adapter may connect, at connect time.

    The hub hands one to the adapters it did not configure itself, so a host name that
    resolves to a forbidden address later (DNS rebinding) is still refused.
    """

    def permit(self, host: str, port: int) -> str:
        """Resolve `host` and return the one address to connect to.

        Raises `AdapterError` when no resolved address may be reached.
        """
        ...


CONCEALED = "the source failed; the hub's log has the details"


@dataclass(frozen=True)
class AdapterSpec:
    """What an adapter is: who owns it, what it serves, and how it is reached."""

    adapter_id: str
    kind: str
    department: str
    serves: Mapping[str, frozenset[KeyKind]]
    department_uscc: str = ""
    timeout: float = 3.0
    max_concurrency: int = 16
    options: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    failure_threshold: int = 5
    cooldown: float = 30.0
    # Run-time registrations: where they may connect, and errors told to callers only
    # as a status and a generic reason (no port-scanner or file-existence oracle).
    guard: ConnectGuard | None = None
    conceal_errors: bool = False
    # The department's record-signing keys: when set, every record must carry a valid
    # department signature by one of them (`signing.department`).
    department_keys: tuple[TrustedKey, ...] = ()

    def serves_record(self, record_type: str, key_kind: KeyKind) -> bool:
        """True when this adapter can be asked for `record_type` by a `key_kind` key."""
        return key_kind in self.serves.get(record_type, frozenset())

    def record_types_for(self, key_kind: KeyKind, wanted: Collection[str]) -> list[str]:
        """The requested record types (all served ones when `wanted` is empty) it serves."""
        return [
            record_type
            for record_type, kinds in self.serves.items()
            if key_kind in kinds and (not wanted or record_type in wanted)
        ]


@dataclass(frozen=True)
class Rejection:
    """A record the source sent that broke a rule; it is dropped with this reason."""

    source_record_id: str
    reason: str
    raw: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class FetchResult:
    """What one fetch produced: valid records, and rejections with their reasons."""

    records: tuple[SourceRecord, ...] = ()
    rejected: tuple[Rejection, ...] = ()


class CircuitOpen(AdapterError):
    """The adapter's circuit breaker is open: the source was not called."""

    def __init__(self, adapter_id: str) -> None:
        super().__init__(adapter_id, "circuit open after repeated failures; not called")


class ChangeKind(enum.StrEnum):
    UPSERT = "UPSERT"
    DELETE = "DELETE"
    # The source sent a row that cannot become a record; sync jobs dead-letter it.
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Change:
    """One change in a source's change stream."""

    kind: ChangeKind
    record_type: str
    source_record_id: str
    record: SourceRecord | None = None
    reason: str = ""
    raw: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ChangeBatch:
    """Changes in source order, and the cursor that resumes right after them."""

    changes: tuple[Change, ...]
    cursor: str
    total_estimate: int | None = None


@dataclass
class AdapterHealth:
    """What this node has seen of the source lately."""

    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str = ""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, AdapterError) and exc.retryable and not isinstance(exc, CircuitOpen)


class Adapter(abc.ABC):
    """Base class of every adapter kind. Subclasses implement `_fetch()` only."""

    def __init__(self, spec: AdapterSpec) -> None:
        self.spec = spec
        self.breaker = CircuitBreaker(spec.failure_threshold, spec.cooldown)
        self.health = AdapterHealth()
        self._slots = asyncio.Semaphore(spec.max_concurrency)

    @property
    def adapter_id(self) -> str:
        return self.spec.adapter_id

    @property
    def circuit_state(self) -> CircuitState:
        return self.breaker.state

    async def fetch(
        self,
        subject: SubjectKey,
        record_types: Sequence[str],
        purpose: Purpose,
        *,
        deadline: float | None = None,
    ) -> FetchResult:
        """Ask the source for `subject`'s records of `record_types`.

        Each attempt is limited by the adapter's timeout; `deadline` (the seconds left
        of the caller's deadline) bounds attempts and retries together. Retryable failures
        (refused connections, unavailable services, timeouts) are retried with backoff
        and jitter while time remains.

        Raises `CircuitOpen` without calling the source while its circuit is open,
        `AdapterTimeout` when no answer came in time, and `AdapterError` otherwise.
        """
        budget = self.spec.timeout * self.spec.retry.attempts if deadline is None else deadline
        if not self.breaker.allow():
            raise CircuitOpen(self.adapter_id)
        expires = time.monotonic() + budget
        try:
            try:
                answer = await self._attempt(subject, record_types, purpose, expires)
            except AdapterError as exc:
                if not _retryable(exc) or self.spec.retry.attempts < 2:
                    raise
                answer = await self._retry(subject, record_types, purpose, expires, exc)
        except AdapterError as exc:
            self.breaker.record_failure()
            failure = self._concealed(exc)
            self.health.last_error_at = datetime.now(UTC)
            self.health.last_error = failure.message
            if failure is exc:
                raise
            raise failure from exc
        self.breaker.record_success()
        self.health.last_success_at = datetime.now(UTC)
        return self._checked(answer, subject, record_types)

    def _concealed(self, exc: AdapterError) -> AdapterError:
        """`exc` as a caller may see it: for a concealing adapter, a generic reason
        (the real one goes to the hub's log); timeouts keep their plain message."""
        if not self.spec.conceal_errors or isinstance(exc, AdapterTimeout):
            return exc
        log.warning("registered adapter failed", adapter=self.adapter_id, error=exc.message)
        return AdapterError(self.adapter_id, CONCEALED, retryable=exc.retryable)

    async def _retry(
        self,
        subject: SubjectKey,
        record_types: Sequence[str],
        purpose: Purpose,
        expires: float,
        first: AdapterError,
    ) -> object:
        """Attempts after a retryable first failure, with backoff, until `expires`.

        When time runs out between attempts, the last real failure is raised, not a
        timeout of an attempt that never ran.
        """
        policy = self.spec.retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts - 1)
            | stop_before_delay(max(0.0, expires - time.monotonic())),
            wait=wait_random_exponential(multiplier=policy.base_delay, max=policy.max_delay),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        # The first attempt failed just now; back off before the next one too.
        await asyncio.sleep(min(policy.base_delay, max(0.0, expires - time.monotonic())))
        last = first
        async for attempt in retrying:
            with attempt:
                if expires - time.monotonic() <= 0:
                    raise last
                try:
                    return await self._attempt(subject, record_types, purpose, expires)
                except AdapterError as exc:
                    last = exc
                    raise
        raise last  # pragma: no cover - tenacity re-raises the last failure

    async def _attempt(
        self,
        subject: SubjectKey,
        record_types: Sequence[str],
        purpose: Purpose,
        expires: float,
    ) -> object:
        seconds = min(self.spec.timeout, expires - time.monotonic())
        if seconds <= 0:
            raise AdapterTimeout(self.adapter_id, 0.0)
        try:
            async with asyncio.timeout(seconds):
                async with self._slots:
                    return await self._fetch(subject, record_types, purpose)
        except TimeoutError as exc:
            raise AdapterTimeout(self.adapter_id, seconds) from exc
        except AdapterError:
            raise
        except TongbanError as exc:
            raise AdapterError(self.adapter_id, exc.message) from exc
        except (ConnectionError, OSError) as exc:
            raise AdapterError(self.adapter_id, _describe(exc), retryable=True) from exc
        except Exception as exc:
            raise AdapterError(self.adapter_id, _describe(exc)) from exc

    def _checked(
        self, answer: object, subject: SubjectKey, record_types: Sequence[str]
    ) -> FetchResult:
        if not isinstance(answer, list | tuple):
            raise AdapterError(self.adapter_id, f"answer is a {type(answer).__name__}, not a list")
        records: list[SourceRecord] = []
        rejected: list[Rejection] = []
        for position, item in enumerate(answer):
            if isinstance(item, Rejection):
                rejected.append(item)
            elif not isinstance(item, SourceRecord):
                rejected.append(
                    Rejection(f"#{position}", f"not a record but a {type(item).__name__}")
                )
            elif item.record_type not in record_types:
                rejected.append(
                    Rejection(
                        item.source_record_id, f"unrequested record type {item.record_type!r}"
                    )
                )
            elif not item.source_record_id:
                rejected.append(Rejection(f"#{position}", "no source record id"))
            elif (problem := self.signature_problem(item)) is not None:
                rejected.append(Rejection(item.source_record_id, problem))
            elif item.signature is not None and not self.spec.department_keys:
                # Nobody can check it here: never pass on a signature the hub did not verify.
                records.append(dataclasses.replace(item, signature=None))
            else:
                records.append(item)
        return FetchResult(tuple(records), tuple(rejected))

    def signature_problem(self, record: SourceRecord) -> str | None:
        """Why `record`'s department signature fails (None: it verifies, or this adapter
        has no department keys). The one check for fetched and synced records."""
        keys = self.spec.department_keys
        if not keys:
            return None
        if record.signature is None:
            return "no department signature, though this department signs its records"
        return check_record_signature(
            record.signature,
            keys,
            record_type=record.record_type,
            source_record_id=record.source_record_id,
            subject=f"{record.subject.kind.value}:{record.subject.value}",
            fields=record.fields,
        )

    @abc.abstractmethod
    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> Sequence[SourceRecord | Rejection]:
        """Return the source's records (and rejections) for `subject`; empty when none."""

    async def changes(
        self, cursor: str | None, *, batch_size: int = 1000
    ) -> AsyncIterator[ChangeBatch]:
        """Stream the source's changes after `cursor` (from the start when None).

        Raises `AdapterError` when the source fails or cannot stream changes.
        """
        try:
            try:
                async for batch in self._changes(cursor, batch_size):
                    yield batch
            except AdapterError:
                raise
            except TongbanError as exc:
                raise AdapterError(self.adapter_id, exc.message) from exc
            except (ConnectionError, OSError, TimeoutError) as exc:
                raise AdapterError(self.adapter_id, _describe(exc), retryable=True) from exc
            except Exception as exc:
                raise AdapterError(self.adapter_id, _describe(exc)) from exc
        except AdapterError as exc:
            failure = self._concealed(exc)
            if failure is exc:
                raise
            raise failure from exc

    async def _changes(self, cursor: str | None, batch_size: int) -> AsyncIterator[ChangeBatch]:
        """Override in kinds whose source can stream changes."""
        raise AdapterError(self.adapter_id, f"a {self.spec.kind} adapter cannot stream changes")
        yield  # pragma: no cover - makes this an async generator

    def warm_up(self) -> None:  # noqa: B027 - optional hook, most kinds prepare nothing
        """Start, in the background on the running loop, what the first fetch would
        otherwise wait for (the hub calls it at start). Never raises."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most kinds hold nothing
        """Release connections and files the adapter holds."""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
