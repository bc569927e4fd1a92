"""`tongban.v1.CatalogService` and `tongban.v1.AccessService`: the sharing catalogue and
applications for conditional data. Translation only: `exchange.sharing` decides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from certstore.access import AccessApplication
from domain.errors import InvalidRequest
from exchange.auth.identity import current_caller
from exchange.generated import (
    access_pb2,
    access_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)
from exchange.hub import Hub
from exchange.services import convert
from exchange.sharing.applications import ApplicationRequest, DecisionRequest
from exchange.sharing.catalogue import CatalogueEntry, SharingClass

Context = grpc.aio.ServicerContext[Any, Any]

_CLASSES = {
    SharingClass.UNCONDITIONAL: catalog_pb2.SHARING_CLASS_UNCONDITIONAL,
    SharingClass.CONDITIONAL: catalog_pb2.SHARING_CLASS_CONDITIONAL,
    SharingClass.NOT_SHARED: catalog_pb2.SHARING_CLASS_NOT_SHARED,
}
_CLASS_OF = {number: sharing for sharing, number in _CLASSES.items()}
_STATES = {
    name.removeprefix("APPLICATION_STATE_"): number
    for name, number in access_pb2.ApplicationState.items()
    if number
}
_STATE_NAMES = {number: name for name, number in _STATES.items()}


def entry_to_proto(hub: Hub, entry: CatalogueEntry) -> catalog_pb2.CatalogEntry:
    return catalog_pb2.CatalogEntry(
        record_type=entry.record_type,
        catalogue_id=entry.catalogue_id,
        description=entry.description,
        owner_uscc=entry.owner_uscc,
        owner_department=entry.owner_department,
        sharing=_CLASSES[entry.sharing],
        fields=[
            catalog_pb2.CatalogField(
                name=name, type=kind, sharing=_CLASSES[entry.field_class(name)]
            )
            for name, kind in entry.fields.items()
        ],
        key_kinds=[common_pb2.KeyKind.Value(f"KEY_KIND_{k.value}") for k in entry.key_kinds],
        update_frequency=entry.update_frequency,
        legal_basis=entry.legal_basis,
        providers=list(entry.providers),
        adapter_ids=[a.adapter_id for a in hub.adapters if entry.record_type in a.spec.serves],
        how_to_access=entry.how_to_access(),
    )


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def List(
        self, request: catalog_pb2.CatalogServiceListRequest, context: Context
    ) -> catalog_pb2.CatalogServiceListResponse:
        if request.sharing and request.sharing not in _CLASS_OF:
            raise InvalidRequest("sharing", f"unknown sharing class {request.sharing}")
        wanted = _CLASS_OF.get(request.sharing)
        return catalog_pb2.CatalogServiceListResponse(
            entries=[
                entry_to_proto(self.hub, entry)
                for entry in self.hub.sharing.entries.values()
                if (wanted is None or entry.sharing is wanted)
                and (not request.owner_uscc or entry.owner_uscc == request.owner_uscc)
            ]
        )

    async def Get(
        self, request: catalog_pb2.CatalogServiceGetRequest, context: Context
    ) -> catalog_pb2.CatalogServiceGetResponse:
        if not request.record_type:
            raise InvalidRequest("record_type", "required")
        entry = self.hub.sharing.get(request.record_type)
        return catalog_pb2.CatalogServiceGetResponse(entry=entry_to_proto(self.hub, entry))


def _requested(
    items: Sequence[access_pb2.RequestedRecordType], field: str
) -> dict[str, tuple[str, ...]]:
    result: dict[str, tuple[str, ...]] = {}
    for position, item in enumerate(items):
        if not item.record_type:
            raise InvalidRequest(f"{field}[{position}].record_type", "required")
        if item.record_type in result:
            raise InvalidRequest(f"{field}[{position}].record_type", "named twice")
        result[item.record_type] = tuple(item.fields)
    return result


def _fields_to_proto(
    fields: dict[str, tuple[str, ...]] | Any,
) -> list[access_pb2.RequestedRecordType]:
    return [
        access_pb2.RequestedRecordType(record_type=t, fields=list(names))
        for t, names in (fields or {}).items()
    ]


def application_to_proto(hub: Hub, application: AccessApplication) -> access_pb2.AccessApplication:
    message = access_pb2.AccessApplication(
        application_id=application.application_id,
        applicant=application.applicant,
        owner_uscc=application.owner_uscc,
        owner_department=hub.access.owner_department(application),
        requested=_fields_to_proto(application.requested_fields),
        purposes=list(application.purposes),
        legal_basis=application.legal_basis,
        contact=application.contact,
        requested_days=application.requested_days,
        state=_STATES[application.state],
        decided_by=application.decided_by or "",
        decision_reason=application.decision_reason,
        granted=_fields_to_proto(application.granted_fields),
        ended_by=application.ended_by or "",
        end_reason=application.end_reason,
    )
    message.submitted_at.CopyFrom(convert.timestamp(application.submitted_at))
    message.decide_by.CopyFrom(convert.timestamp(application.decide_by))
    for name in ("decided_at", "grant_expires_at", "ended_at"):
        moment = getattr(application, name)
        if moment is not None:
            getattr(message, name).CopyFrom(convert.timestamp(moment))
    return message


def _application_id(value: str) -> str:
    if not value:
        raise InvalidRequest("application_id", "required")
    return value


class AccessServicer(access_pb2_grpc.AccessServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def Apply(
        self, request: access_pb2.AccessServiceApplyRequest, context: Context
    ) -> access_pb2.AccessServiceApplyResponse:
        application = await self.hub.access.apply(
            current_caller(),
            ApplicationRequest(
                fields=_requested(request.record_types, "record_types"),
                purposes=tuple(request.purposes),
                legal_basis=request.legal_basis,
                duration_days=request.duration_days,
                contact=request.contact,
            ),
        )
        return access_pb2.AccessServiceApplyResponse(
            application=application_to_proto(self.hub, application)
        )

    async def Decide(
        self, request: access_pb2.AccessServiceDecideRequest, context: Context
    ) -> access_pb2.AccessServiceDecideResponse:
        if request.decision not in (access_pb2.DECISION_APPROVE, access_pb2.DECISION_REJECT):
            raise InvalidRequest("decision", "DECISION_APPROVE or DECISION_REJECT")
        application = await self.hub.access.decide(
            current_caller(),
            DecisionRequest(
                application_id=_application_id(request.application_id),
                approve=request.decision == access_pb2.DECISION_APPROVE,
                reason=request.reason,
                granted=_requested(request.granted, "granted") or None,
                duration_days=request.duration_days,
            ),
        )
        return access_pb2.AccessServiceDecideResponse(
            application=application_to_proto(self.hub, application)
        )

    async def Withdraw(
        self, request: access_pb2.AccessServiceWithdrawRequest, context: Context
    ) -> access_pb2.AccessServiceWithdrawResponse:
        application = await self.hub.access.withdraw(
            current_caller(), _application_id(request.application_id), request.reason
        )
        return access_pb2.AccessServiceWithdrawResponse(
            application=application_to_proto(self.hub, application)
        )

    async def Revoke(
        self, request: access_pb2.AccessServiceRevokeRequest, context: Context
    ) -> access_pb2.AccessServiceRevokeResponse:
        application = await self.hub.access.revoke(
            current_caller(), _application_id(request.application_id), request.reason
        )
        return access_pb2.AccessServiceRevokeResponse(
            application=application_to_proto(self.hub, application)
        )

    async def List(
        self, request: access_pb2.AccessServiceListRequest, context: Context
    ) -> access_pb2.AccessServiceListResponse:
        states = []
        for index, state in enumerate(request.states):
            if state not in _STATE_NAMES:
                raise InvalidRequest(f"states[{index}]", f"unknown application state {state}")
            states.append(_STATE_NAMES[state])
        if request.role not in access_pb2.ListRole.values():
            raise InvalidRequest("role", f"unknown role {request.role}")
        found = await self.hub.access.applications(
            current_caller(),
            as_applicant=request.role != access_pb2.LIST_ROLE_OWNER,
            as_owner=request.role != access_pb2.LIST_ROLE_APPLICANT,
            states=states,
        )
        return access_pb2.AccessServiceListResponse(
            applications=[application_to_proto(self.hub, a) for a in found]
        )
