"""Run-time adapter registration for the current caller, with ownership and audit.

Transport-free: the gRPC servicer (and any other transport) translates the request
into a configuration-shaped declaration and calls one method here. What a
registration may be and reach is decided by `exchange.egress.RegistrationRules`
(through the catalog); who may change an adapter is decided here. Every change of the
registry and every refused registration or removal is an audit entry (issue 17 §6);
options (where secrets live) never reach the audit trail or the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.base import Adapter
from domain.errors import InvalidRequest, PermissionDenied, TongbanError
from exchange.auth.identity import current_caller
from exchange.hub import Hub

REGISTER = "ADAPTER_REGISTER"
DEREGISTER = "ADAPTER_DEREGISTER"
_ID_SHOWN = 100


def check_owner(department_uscc: str, action: str) -> None:
    """Only the department that owns an adapter may change it. Raises `PermissionDenied`."""
    caller = current_caller()
    if caller.anonymous_dev or (department_uscc and caller.organization == department_uscc):
        return
    raise PermissionDenied(f"only the department that owns an adapter may {action} it")


class AdapterRegistrations:
    """Register, remove and heartbeat run-time adapters on behalf of the current caller."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def register(self, declaration: Mapping[str, Any]) -> Adapter:
        """Register or replace an adapter; returns it once it is stored and audited.

        Raises `InvalidRequest`, `PermissionDenied` (both audited) and `StoreError`.
        """
        about = {
            "adapter_id": str(declaration.get("id", ""))[:_ID_SHOWN],
            "kind": str(declaration.get("kind", "")),
            "department_uscc": str(declaration.get("department_uscc", "")),
        }
        try:
            check_owner(about["department_uscc"], "register")
            adapter, retired = await asyncio.to_thread(self.hub.catalog.register, declaration)
        except (InvalidRequest, PermissionDenied) as exc:
            await self._refused(REGISTER, about, exc)
            raise
        await self.hub.close_adapters(retired)
        await self._audit(REGISTER, "OK", about, replaced=bool(retired))
        return adapter

    async def deregister(self, adapter_id: str) -> None:
        """Remove a run-time adapter. Raises `PermissionDenied` (audited), `NotFound`,
        `StoreError`."""
        about = {"adapter_id": adapter_id[:_ID_SHOWN]}
        try:
            self._check_registered_owner(adapter_id, "remove")
            retired = await asyncio.to_thread(self.hub.catalog.deregister, adapter_id)
        except PermissionDenied as exc:
            await self._refused(DEREGISTER, about, exc)
            raise
        await self.hub.close_adapters([retired] if retired else [])
        await self._audit(DEREGISTER, "OK", about)

    async def heartbeat(self, adapter_id: str) -> datetime | None:
        """Record a heartbeat; returns when the next is due. Raises `PermissionDenied`,
        `NotFound`, `StoreError`."""
        self._check_registered_owner(adapter_id, "send heartbeats for")
        return await asyncio.to_thread(self.hub.catalog.heartbeat, adapter_id)

    def _check_registered_owner(self, adapter_id: str, action: str) -> None:
        registration = self.hub.catalog.registration(adapter_id)
        if registration is None:
            # An unknown id is refused like someone else's: callers cannot probe what exists.
            if not current_caller().anonymous_dev:
                raise PermissionDenied(f"only the department that owns an adapter may {action} it")
            return
        check_owner(str(registration.declaration.get("department_uscc", "")), action)

    async def _refused(self, action: str, about: Mapping[str, str], exc: TongbanError) -> None:
        outcome = "DENIED" if isinstance(exc, PermissionDenied) else "REFUSED"
        field = exc.field if isinstance(exc, InvalidRequest) else None
        await self._audit(action, outcome, about, why=exc.message[:500], field=field)
        if isinstance(exc, PermissionDenied):
            exc.audited = True

    async def _audit(
        self, action: str, outcome: str, about: Mapping[str, str], **more: Any
    ) -> None:
        detail = {**about, **{k: v for k, v in more.items() if v is not None}}
        await self.hub.audit.record(
            self.hub.audit.entry(current_caller(), action, outcome, **detail)
        )
