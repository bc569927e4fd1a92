"""The adapters a hub node consults: configured ones plus run-time registrations.

Registrations persist in the store, so they survive a restart and every node on the
same database sees them (`refresh()` picks up what other nodes changed). An adapter
that promised heartbeats and missed its window is marked down, never deleted: the
router reports it without calling it until the next heartbeat.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from adapters.base import Adapter
from adapters.factory import build_adapter, build_from_spec, spec_from_settings
from certstore.registrations import (
    ORIGIN_CONFIG,
    ORIGIN_REGISTERED,
    Registration,
    RegistrationRepository,
)
from domain.adapter_settings import AdapterSettings
from domain.errors import ConfigError, InvalidRequest, NotFound, PermissionDenied, TongbanError
from exchange.egress import RegistrationRules
from exchange.settings import Settings
from exchange.sharing.catalogue import SharingCatalogue

log = structlog.get_logger("tongban.catalog")

# A heartbeat may come this many intervals late before the adapter is marked down.
HEARTBEAT_GRACE = 1.5


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AdapterCatalog:
    """The live adapters of this node, in a stable order: configured, then registered."""

    def __init__(
        self,
        settings: Settings,
        registrations: RegistrationRepository,
        sharing: SharingCatalogue | None = None,
    ) -> None:
        self._settings = settings
        self._sharing = sharing or SharingCatalogue(settings.record_types)
        self._registrations = registrations
        self.rules = RegistrationRules(settings)
        self._configured: dict[str, Adapter] = {}
        self._registered: dict[str, Adapter] = {}
        self._known: dict[str, Registration] = {}
        # Registrations change in worker threads while lookups read on the event loop.
        self._lock = threading.Lock()

    @property
    def adapters(self) -> list[Adapter]:
        with self._lock:
            return [*self._configured.values(), *self._registered.values()]

    def origin(self, adapter_id: str) -> str:
        return ORIGIN_CONFIG if adapter_id in self._configured else ORIGIN_REGISTERED

    def registration(self, adapter_id: str) -> Registration | None:
        return self._known.get(adapter_id)

    def load(self, configured: list[Adapter] | None = None) -> None:
        """Build the configured adapters (or take `configured`) and the stored ones.

        Raises `ConfigError` when a configured adapter cannot be built or reads the
        hub's own store.
        """
        self.rules.check_configured(self._settings.adapters)
        if configured is None:
            configured = [
                build_adapter(adapter, f"adapters[{i}]")
                for i, adapter in enumerate(self._settings.adapters)
            ]
        self._configured = {a.adapter_id: a for a in configured}
        declared = {a.id: a for a in self._settings.adapters}
        self._registrations.sync_config(
            [
                _declaration(declared[a.adapter_id])
                if a.adapter_id in declared
                else {"id": a.adapter_id, "kind": a.spec.kind}
                for a in configured
            ],
            _utcnow(),
        )
        self._registrations.reseal()
        self.refresh()

    def refresh(self) -> list[Adapter]:
        """Bring run-time registrations in line with the store; returns adapters to close."""
        stored = {r.adapter_id: r for r in self._registrations.list()}
        with self._lock:
            return self._apply(stored)

    def _apply(self, stored: dict[str, Registration]) -> list[Adapter]:
        retired: list[Adapter] = []
        for adapter_id in list(self._registered):
            if adapter_id not in stored:
                retired.append(self._registered.pop(adapter_id))
        for adapter_id, registration in stored.items():
            if registration.origin != ORIGIN_REGISTERED:
                continue
            previous = self._known.get(adapter_id)
            if adapter_id in self._registered and previous is not None:
                if previous.updated_at == registration.updated_at:
                    continue
                retired.append(self._registered.pop(adapter_id))
            try:
                adapter = self._build(registration.declaration, registered=True)
                self.rules.check_targets(registration.declaration)
            except TongbanError as exc:
                log.error("stored adapter cannot be built", adapter=adapter_id, error=exc.message)
                continue
            self._registered[adapter_id] = adapter
        self._known = stored
        return retired

    def _build(self, declaration: Mapping[str, Any], *, registered: bool = False) -> Adapter:
        """Validate a declaration and build its adapter.

        Raises `InvalidRequest`, and `PermissionDenied` for a record type the adapter's
        department neither owns nor is named a provider of in the sharing catalogue
        and (for a `registered` one) for a kind the registration rules refuse. A
        `registered` adapter connects only where the egress rules allow, checked at
        every connection, and tells callers its failures only as a generic reason.
        """
        try:
            settings = AdapterSettings.model_validate(declaration)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequest(
                _request_field(first["loc"]), first["msg"].removeprefix("Value error, ")
            ) from exc
        for position, binding in enumerate(settings.serves):
            if binding.record_type not in self._settings.record_types:
                raise InvalidRequest(
                    f"spec.serves[{position}].record_type",
                    f"record type {binding.record_type!r} is not declared by this hub",
                )
            problem = self._sharing.serving_problem(settings.department_uscc, binding.record_type)
            if problem is not None:
                raise PermissionDenied(f"spec.serves[{position}].record_type: {problem}")
        try:
            spec = spec_from_settings(settings)
        except ConfigError as exc:
            # A declaration's department keys are checked here (kind, department, JWK shape).
            if not registered:
                raise
            member = exc.setting.removeprefix(f"adapters.{settings.id}.")
            raise InvalidRequest(f"spec.{member}", exc.rule) from exc
        if registered:
            # The kind is checked before anything is built: a python plug-in is code.
            self.rules.check_kind(declaration)
            spec = dataclasses.replace(
                spec, guard=self.rules.guard(settings.department_uscc), conceal_errors=True
            )
        return build_from_spec(spec)

    def register(self, declaration: Mapping[str, Any]) -> tuple[Adapter, list[Adapter]]:
        """Register or replace a run-time adapter; returns it and the adapters to close.

        Raises `InvalidRequest` for an invalid declaration; `PermissionDenied` for a
        record type its department may not serve, for a kind or target the
        registration rules refuse (`exchange.egress`), for the id of a configured
        adapter and for an id another department registered; `StoreError`.
        """
        # Whose id it is comes first: a taken id is refused whatever else is asked.
        adapter_id = str(declaration.get("id", ""))
        if adapter_id in self._configured:
            raise PermissionDenied(
                f"spec.adapter_id: adapter {adapter_id!r} is declared in the hub's "
                "configuration; only the operator changes it there"
            )
        self._check_id_owner(adapter_id, str(declaration.get("department_uscc", "")))
        adapter = self._build(declaration, registered=True)
        self.rules.check_targets(declaration)
        registration = self._registrations.put(
            adapter.adapter_id, declaration, ORIGIN_REGISTERED, _utcnow()
        )
        with self._lock:
            previous = self._registered.get(adapter.adapter_id)
            self._registered[adapter.adapter_id] = adapter
            self._known[adapter.adapter_id] = registration
        return adapter, [previous] if previous else []

    def _check_id_owner(self, adapter_id: str, department_uscc: str) -> None:
        """An adapter id belongs to the department that registered it first."""
        try:
            stored = self._registrations.get(adapter_id)
        except NotFound:
            return
        if stored.origin != ORIGIN_REGISTERED:
            raise PermissionDenied(
                f"spec.adapter_id: adapter {adapter_id!r} is declared in the hub's "
                "configuration; only the operator changes it there"
            )
        owner = str(stored.declaration.get("department_uscc", ""))
        if owner.strip().upper() != department_uscc.strip().upper():
            raise PermissionDenied(
                f"spec.adapter_id: adapter {adapter_id!r} belongs to another department; "
                "choose another id"
            )

    def deregister(self, adapter_id: str) -> Adapter | None:
        """Remove a run-time registration; returns the adapter to close, if it was live.

        Raises `NotFound`, and `PermissionDenied` for a configured adapter.
        """
        if adapter_id in self._configured:
            raise PermissionDenied(
                f"adapter_id: adapter {adapter_id!r} is declared in the hub's configuration; "
                "only the operator removes it there"
            )
        self._registrations.delete(adapter_id)
        with self._lock:
            self._known.pop(adapter_id, None)
            return self._registered.pop(adapter_id, None)

    def heartbeat(self, adapter_id: str) -> datetime | None:
        """Record a heartbeat; returns when the next one is due (None: none promised).

        Raises `NotFound` when no adapter has this id.
        """
        registration = self._registrations.heartbeat(adapter_id, _utcnow())
        with self._lock:
            self._known[adapter_id] = registration
        interval = _heartbeat_seconds(registration)
        if interval is None or registration.last_heartbeat_at is None:
            return None
        return registration.last_heartbeat_at + timedelta(seconds=interval)

    def down_reason(self, adapter: Adapter) -> str | None:
        """Why `adapter` is marked down (a missed heartbeat window), or None."""
        registration = self._known.get(adapter.adapter_id)
        interval = _heartbeat_seconds(registration) if registration else None
        if registration is None or interval is None:
            return None
        last = registration.last_heartbeat_at or registration.updated_at
        if _utcnow() - last <= timedelta(seconds=interval * HEARTBEAT_GRACE):
            return None
        return f"marked down: no heartbeat since {last.isoformat(timespec='seconds')}"


def _heartbeat_seconds(registration: Registration) -> float | None:
    value = registration.declaration.get("heartbeat_seconds")
    return float(value) if isinstance(value, int | float) else None


def _declaration(settings: AdapterSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


_PROTO_NAMES = {
    "id": "adapter_id",
    "timeout_seconds": "timeout",
    "heartbeat_seconds": "heartbeat_interval",
    "options": "settings",
}


def _request_field(location: tuple[int | str, ...]) -> str:
    """``('serves', 0, 'record_type')`` → ``spec.serves[0].record_type``."""
    path = "spec"
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{_PROTO_NAMES.get(part, part) if path == 'spec' else part}"
    return path
