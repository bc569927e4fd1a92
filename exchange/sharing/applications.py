"""Access applications and grants: who may read conditionally shared data, decided by
the department that owns it.

`AccessDesk` is the application service behind `AccessService` (any transport calls
it): apply, decide, withdraw, revoke, list, and expiry of what ran out. Every change is
an audit entry. `AccessDesk.effective_grant` is the one seam the lookup path uses: the
static policy's grant for a caller, narrowed and widened by the catalogue and the
caller's live grants in the store.

Grants live in the store so every node on one database agrees. A node re-reads them
when the store's change counter moved, and checks the counter at most every
`access.grant_refresh_seconds`: that interval (plus one small query) bounds how late a
new or revoked grant takes effect on another node. Changes made on this node take
effect on it at once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from certstore.access import (
    APPROVED,
    EXPIRED,
    PENDING,
    REJECTED,
    REVOKED,
    WITHDRAWN,
    AccessApplication,
    AccessRepository,
)
from domain.errors import FailedPrecondition, InvalidRequest, PermissionDenied
from exchange.audit import AuditTrail
from exchange.auth.policy import ALL, Caller, Grant
from exchange.settings import AccessSettings
from exchange.sharing.calendar import WorkingCalendar
from exchange.sharing.catalogue import CatalogueEntry, SharingCatalogue, SharingClass
from exchange.sync.schedule import parse_utc_offset

log = structlog.get_logger("tongban.access")

Clock = Callable[[], datetime]
MAX_TEXT = 2000
MAX_PURPOSES = 20


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ApplicationRequest:
    """What a caller asks for: {record type: fields} (empty fields: all it may have)."""

    fields: Mapping[str, tuple[str, ...]]
    purposes: tuple[str, ...]
    legal_basis: str = ""
    duration_days: int = 0
    contact: str = ""


@dataclass(frozen=True)
class DecisionRequest:
    """The owner's answer; `granted` and `duration_days` narrow an approval."""

    application_id: str
    approve: bool
    reason: str = ""
    granted: Mapping[str, tuple[str, ...]] | None = None
    duration_days: int = 0


def effective_grant(
    static: Grant,
    caller: Caller,
    catalogue: SharingCatalogue,
    grants: Iterable[AccessApplication],
    now: datetime,
) -> Grant:
    """`static` (the access policy's grant) after the catalogue and `grants`.

    UNCONDITIONAL types stay as the static policy has them; CONDITIONAL ones are readable
    only under a live grant of the caller (its fields, within the static policy's fields
    when that names the type), or by the owner itself; NOT_SHARED types and fields are
    never readable. Conditional fields of an unconditional type need a grant naming them.
    """
    granted: dict[str, set[str] | None] = {}
    for application in grants:
        if application.applicant != caller.name or not application.live_at(now):
            continue
        for record_type, names in (application.granted_fields or {}).items():
            known = granted.get(record_type, set())
            if not names:
                granted[record_type] = None
            elif known is not None:
                granted[record_type] = known | set(names)
    record_fields = dict(static.record_fields)
    withheld: dict[str, str] = {}
    withheld_fields: dict[str, frozenset[str]] = {}
    for record_type, entry in catalogue.entries.items():
        privileged = static.unrestricted or (
            bool(entry.owner_uscc) and caller.organization == entry.owner_uscc
        )
        if entry.sharing is SharingClass.NOT_SHARED:
            withheld[record_type] = entry.not_shared_hint()
            record_fields.pop(record_type, None)
            continue
        hidden = set(entry.unshared_fields)
        if entry.sharing is SharingClass.CONDITIONAL and not privileged:
            if record_type not in granted:
                withheld[record_type] = entry.apply_hint()
                record_fields.pop(record_type, None)
                continue
            fields = granted[record_type]
            allowed = None if fields is None else frozenset(fields)
            limit = static.record_fields.get(record_type)
            if limit is not None and ALL not in limit:
                allowed = frozenset(limit) if allowed is None else allowed & limit
            record_fields[record_type] = frozenset({ALL}) if allowed is None else allowed
        elif entry.conditional_fields and not privileged:
            if record_type in granted:
                given = granted[record_type]
                opened = entry.conditional_fields if given is None else frozenset(given)
            else:
                opened = frozenset()
            hidden |= entry.conditional_fields - opened
        if hidden:
            withheld_fields[record_type] = frozenset(hidden)
    return replace(
        static,
        record_fields=record_fields,
        withheld=withheld,
        withheld_fields=withheld_fields,
    )


class GrantBook:
    """This node's copy of the live grants, re-read when the store's counter moves."""

    def __init__(
        self, repository: AccessRepository, refresh_seconds: float, clock: Clock = _utcnow
    ) -> None:
        self._repository = repository
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._grants: tuple[AccessApplication, ...] = ()
        self._version: int | None = None
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Re-check the store at the next use (after a change made on this node)."""
        self._checked_at = float("-inf")

    async def grants(self) -> tuple[AccessApplication, ...]:
        """The grants as of at most `refresh_seconds` ago. Raises `StoreError`."""
        if time.monotonic() - self._checked_at < self._refresh_seconds:
            return self._grants
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._refresh_seconds:
                await asyncio.to_thread(self._reload)
        return self._grants

    def _reload(self) -> None:
        checked = time.monotonic()
        version = self._repository.version()
        if version != self._version:
            self._grants = tuple(self._repository.grants(self._clock()))
            self._version = version
        self._checked_at = checked


class AccessDesk:
    """Applications, decisions and grants for the record types of the catalogue."""

    def __init__(
        self,
        catalogue: SharingCatalogue,
        repository: AccessRepository,
        settings: AccessSettings,
        audit: AuditTrail,
        clock: Clock = _utcnow,
    ) -> None:
        self.catalogue = catalogue
        self.repository = repository
        self.settings = settings
        self.audit = audit
        self.clock = clock
        self.calendar = WorkingCalendar(
            parse_utc_offset(settings.utc_offset), settings.holidays, settings.working_weekend_days
        )
        self.book = GrantBook(repository, settings.grant_refresh_seconds, clock)

    def use_clock(self, clock: Clock) -> None:
        """Read time from `clock` from now on (tests move it to expire things)."""
        self.clock = clock
        self.book = GrantBook(self.repository, self.settings.grant_refresh_seconds, clock)

    # --- the lookup path's seam -------------------------------------------------------

    async def effective_grant(self, caller: Caller, static: Grant) -> Grant:
        """The caller's grant for a lookup: `static` after the catalogue and its live
        store grants. Raises `StoreError` when the grants cannot be read."""
        if not self.catalogue.entries:
            return static
        needs_grants = any(e.needs_application for e in self.catalogue.entries.values())
        grants = await self.book.grants() if needs_grants and not caller.anonymous_dev else ()
        return effective_grant(static, caller, self.catalogue, grants, self.clock())

    # --- the lifecycle -------------------------------------------------------------------

    async def apply(self, caller: Caller, request: ApplicationRequest) -> AccessApplication:
        """File an application. Raises `InvalidRequest`, `FailedPrecondition`,
        `PermissionDenied` and `StoreError`."""
        if caller.anonymous_dev:
            raise PermissionDenied(
                "an application needs an identified caller: a client certificate, or a dev "
                "token in dev mode (tongban ca dev-token)"
            )
        fields = self._requested(request.fields)
        owners = {self.catalogue.get(t).owner_uscc for t in fields}
        if len(owners) > 1:
            raise InvalidRequest(
                "record_types", "record types of different owners need separate applications"
            )
        owner = owners.pop()
        if caller.organization == owner:
            raise FailedPrecondition("your department owns these record types: no application")
        purposes = tuple(p.strip() for p in request.purposes if p.strip())
        if not purposes:
            raise InvalidRequest("purposes", "say why the data is needed (at least one purpose)")
        if len(purposes) > MAX_PURPOSES or any(len(p) > MAX_TEXT for p in purposes):
            raise InvalidRequest(
                "purposes", f"at most {MAX_PURPOSES} purposes of {MAX_TEXT} characters"
            )
        for name, text in (("legal_basis", request.legal_basis), ("contact", request.contact)):
            if len(text) > MAX_TEXT:
                raise InvalidRequest(name, f"at most {MAX_TEXT} characters")
        days = self._days(request.duration_days, "duration_days", self.settings.max_grant_days)
        now = self.clock()
        application = AccessApplication(
            application_id=f"AA-{now:%Y%m%d}-{secrets.token_hex(5)}",
            applicant=caller.name,
            owner_uscc=owner,
            requested_fields=fields,
            purposes=purposes,
            legal_basis=request.legal_basis.strip(),
            contact=request.contact.strip(),
            requested_days=days or self.settings.default_grant_days,
            state=PENDING,
            submitted_at=now,
            decide_by=self.calendar.deadline(now, self.settings.decision_working_days),
        )
        await asyncio.to_thread(self.repository.add, application)
        await self._audit(caller, "ACCESS_APPLY", PENDING, application)
        return application

    async def decide(self, caller: Caller, decision: DecisionRequest) -> AccessApplication:
        """The owner approves or rejects a pending application. Raises `InvalidRequest`,
        `NotFound`, `PermissionDenied`, `FailedPrecondition` and `StoreError`."""
        application = await self._owned(caller, decision.application_id, "decide")
        await self.expire_overdue()
        now = self.clock()
        changes: dict[str, Any] = {"decided_at": now, "decided_by": str(caller), "updated_at": now}
        if decision.approve:
            granted = self._narrowed(application, decision.granted)
            limit = application.requested_days
            days = self._days(decision.duration_days, "duration_days", limit) or limit
            changes.update(
                state=APPROVED,
                decision_reason=decision.reason.strip()[:MAX_TEXT],
                granted_fields={k: list(v) for k, v in granted.items()},
                grant_expires_at=now + timedelta(days=days),
            )
        else:
            if not decision.reason.strip():
                raise InvalidRequest("reason", "a rejection must say why")
            changes.update(state=REJECTED, decision_reason=decision.reason.strip()[:MAX_TEXT])
        decided = await self._move(application, (PENDING,), changes)
        await self._audit(caller, "ACCESS_DECIDE", decided.state, decided)
        return decided

    async def withdraw(
        self, caller: Caller, application_id: str, reason: str = ""
    ) -> AccessApplication:
        """The applicant withdraws a pending application or gives up its grant."""
        application = await asyncio.to_thread(self.repository.get, application_id)
        if not caller.anonymous_dev and application.applicant != caller.name:
            raise PermissionDenied("only the applicant may withdraw an application")
        now = self.clock()
        withdrawn = await self._move(
            application,
            (PENDING, APPROVED),
            {
                "state": WITHDRAWN,
                "ended_at": now,
                "ended_by": str(caller),
                "end_reason": reason.strip()[:MAX_TEXT],
                "updated_at": now,
            },
        )
        await self._audit(caller, "ACCESS_WITHDRAW", WITHDRAWN, withdrawn)
        return withdrawn

    async def revoke(self, caller: Caller, application_id: str, reason: str) -> AccessApplication:
        """The owner revokes a grant at any time. Raises as `decide`."""
        if not reason.strip():
            raise InvalidRequest("reason", "a revocation must say why")
        application = await self._owned(caller, application_id, "revoke")
        now = self.clock()
        revoked = await self._move(
            application,
            (APPROVED,),
            {
                "state": REVOKED,
                "ended_at": now,
                "ended_by": str(caller),
                "end_reason": reason.strip()[:MAX_TEXT],
                "updated_at": now,
            },
        )
        await self._audit(caller, "ACCESS_REVOKE", REVOKED, revoked)
        return revoked

    async def applications(
        self, caller: Caller, *, as_applicant: bool = True, as_owner: bool = True,
        states: Sequence[str] = (),
    ) -> list[AccessApplication]:  # fmt: skip
        """Applications the caller made and/or those addressed to its department."""
        await self.expire_overdue()
        if caller.anonymous_dev:
            return await asyncio.to_thread(self.repository.find, states=states)
        found: dict[str, AccessApplication] = {}
        if as_applicant:
            for a in await asyncio.to_thread(
                self.repository.find, applicant=caller.name, states=states
            ):
                found[a.application_id] = a
        if as_owner:
            for a in await asyncio.to_thread(
                self.repository.find, owner_uscc=caller.organization, states=states
            ):
                found[a.application_id] = a
        return sorted(found.values(), key=lambda a: a.submitted_at, reverse=True)

    async def expire_overdue(self) -> int:
        """Expire pending applications past their decision period and grants past their
        end; each is audited once, by the node whose update won. Returns how many."""
        now = self.clock()
        expired = 0
        for application_id, state in await asyncio.to_thread(self.repository.overdue, now):
            why = (
                f"not decided within {self.settings.decision_working_days} working days"
                if state == PENDING
                else "the grant's duration ended"
            )
            changed = await asyncio.to_thread(
                self.repository.transition,
                application_id,
                (state,),
                state=EXPIRED,
                ended_at=now,
                ended_by="hub",
                end_reason=why,
                updated_at=now,
            )
            if changed is not None:
                expired += 1
                await self._audit(None, "ACCESS_EXPIRE", EXPIRED, changed)
        if expired:
            self.book.invalidate()
        return expired

    # --- helpers -------------------------------------------------------------------------

    def owner_department(self, application: AccessApplication) -> str:
        for record_type in application.record_types:
            entry = self.catalogue.entries.get(record_type)
            if entry is not None:
                return entry.owner_department
        return ""

    def _requested(self, asked: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if not asked:
            raise InvalidRequest("record_types", "name at least one record type")
        if len(asked) > 64:
            raise InvalidRequest("record_types", "at most 64 record types")
        result: dict[str, tuple[str, ...]] = {}
        for position, (record_type, names) in enumerate(asked.items()):
            where = f"record_types[{position}]"
            entry = self.catalogue.entries.get(record_type)
            if entry is None:
                raise InvalidRequest(
                    f"{where}.record_type", f"unknown record type {record_type[:80]!r}"
                )
            if entry.sharing is SharingClass.NOT_SHARED:
                raise FailedPrecondition(entry.not_shared_hint() + ": it cannot be applied for")
            if not entry.needs_application:
                raise FailedPrecondition(
                    f"{record_type} is shared unconditionally ({entry.reference}): it needs no "
                    "application, only the hub's access policy"
                )
            result[record_type] = self._fields_of(entry, names, f"{where}.fields")
        return result

    @staticmethod
    def _fields_of(entry: CatalogueEntry, names: Sequence[str], where: str) -> tuple[str, ...]:
        for index, name in enumerate(names):
            if entry.fields and name not in entry.fields:
                raise InvalidRequest(
                    f"{where}[{index}]", f"{entry.record_type} has no field {name[:64]!r}"
                )
            if entry.field_class(name) is SharingClass.NOT_SHARED:
                raise InvalidRequest(
                    f"{where}[{index}]", f"field {name} of {entry.record_type} is not shared"
                )
        return tuple(dict.fromkeys(names))

    def _narrowed(
        self, application: AccessApplication, granted: Mapping[str, tuple[str, ...]] | None
    ) -> dict[str, tuple[str, ...]]:
        """What an approval grants: the request, or a narrower part of it."""
        requested = dict(application.requested_fields)
        if not granted:
            return requested
        result: dict[str, tuple[str, ...]] = {}
        for position, (record_type, names) in enumerate(granted.items()):
            where = f"granted[{position}]"
            if record_type not in requested:
                raise InvalidRequest(
                    f"{where}.record_type", f"{record_type[:80]!r} was not applied for"
                )
            asked = requested[record_type]
            entry = self.catalogue.get(record_type)
            names = self._fields_of(entry, names, f"{where}.fields") or asked
            wider = [n for n in names if asked and n not in asked]
            if wider:
                raise InvalidRequest(
                    f"{where}.fields", f"field {wider[0]} was not applied for: narrow only"
                )
            result[record_type] = names
        return result

    @staticmethod
    def _days(value: int, field: str, limit: int) -> int:
        if value < 0 or value > limit:
            raise InvalidRequest(field, f"must be between 1 and {limit} days (0: the default)")
        return value

    async def _owned(self, caller: Caller, application_id: str, action: str) -> AccessApplication:
        application = await asyncio.to_thread(self.repository.get, application_id)
        if not caller.anonymous_dev and caller.organization != application.owner_uscc:
            raise PermissionDenied(
                f"only the owning department ({application.owner_uscc}) may {action} "
                "this application"
            )
        return application

    async def _move(
        self, application: AccessApplication, from_states: Sequence[str], changes: dict[str, Any]
    ) -> AccessApplication:
        moved = await asyncio.to_thread(
            self.repository.transition, application.application_id, from_states, **changes
        )
        if moved is None:
            current = await asyncio.to_thread(self.repository.get, application.application_id)
            raise FailedPrecondition(
                f"application {application.application_id} is {current.state}; only a "
                f"{' or '.join(from_states)} one can be {str(changes['state']).lower()}"
            )
        self.book.invalidate()
        return moved

    async def _audit(
        self, caller: Caller | None, action: str, outcome: str, application: AccessApplication
    ) -> None:
        who: Any = caller if caller is not None else Caller(organization="hub", system="access")
        await self.audit.record(
            self.audit.entry(
                who,
                action,
                outcome,
                application_id=application.application_id,
                applicant=application.applicant,
                owner_uscc=application.owner_uscc,
                record_types=list(application.record_types),
                requested_fields={k: list(v) for k, v in application.requested_fields.items()},
                granted_fields={k: list(v) for k, v in (application.granted_fields or {}).items()},
                purposes=list(application.purposes),
                grant_expires_at=application.grant_expires_at.isoformat()
                if application.grant_expires_at
                else None,
                reason=application.decision_reason or application.end_reason,
            )
        )
        log.info(
            "access application",
            action=action,
            outcome=outcome,
            application_id=application.application_id,
            applicant=application.applicant,
        )
