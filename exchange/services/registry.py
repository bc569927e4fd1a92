"""`tongban.v1.AdapterRegistry`: the adapters this hub consults, with their health."""

from __future__ import annotations

from typing import Any

import grpc

from adapters.base import Adapter
from adapters.resilience import CircuitState
from certstore.registrations import ORIGIN_CONFIG
from domain.errors import InvalidRequest
from exchange.generated import adapters_pb2, adapters_pb2_grpc, common_pb2
from exchange.hub import Hub
from exchange.registration import AdapterRegistrations
from exchange.services import convert

Context = grpc.aio.ServicerContext[Any, Any]

_KINDS = {
    "grpc": adapters_pb2.ADAPTER_KIND_GRPC,
    "sql": adapters_pb2.ADAPTER_KIND_SQL,
    "http": adapters_pb2.ADAPTER_KIND_HTTP,
    "file": adapters_pb2.ADAPTER_KIND_FILE,
    "python": adapters_pb2.ADAPTER_KIND_PYTHON,
}
_KIND_NAMES = {number: name for name, number in _KINDS.items()}
_CIRCUITS = {
    CircuitState.CLOSED: adapters_pb2.CIRCUIT_STATE_CLOSED,
    CircuitState.OPEN: adapters_pb2.CIRCUIT_STATE_OPEN,
    CircuitState.HALF_OPEN: adapters_pb2.CIRCUIT_STATE_HALF_OPEN,
}


def declaration_from_proto(spec: adapters_pb2.AdapterSpec) -> dict[str, Any]:
    """The configuration-shaped declaration of a registered adapter.

    Raises `InvalidRequest` naming the field for enum values out of range; the rest
    is validated when the declaration is built.
    """
    if spec.kind not in _KIND_NAMES:
        raise InvalidRequest("spec.kind", f"an adapter kind is required ({', '.join(_KINDS)})")
    serves = []
    for position, binding in enumerate(spec.serves):
        kinds = []
        for index, kind in enumerate(binding.key_kinds):
            if kind == common_pb2.KEY_KIND_UNSPECIFIED or kind not in common_pb2.KeyKind.values():
                raise InvalidRequest(
                    f"spec.serves[{position}].key_kinds[{index}]", f"unknown key kind {kind}"
                )
            kinds.append(common_pb2.KeyKind.Name(kind).removeprefix("KEY_KIND_"))
        serves.append({"record_type": binding.record_type, "key_kinds": kinds})
    declaration: dict[str, Any] = {
        "id": spec.adapter_id,
        "kind": _KIND_NAMES[spec.kind],
        "department": spec.department,
        "department_uscc": spec.department_uscc,
        "serves": serves,
        "options": convert.struct_to_dict(spec.settings),
    }
    if spec.department_keys:
        declaration["department_keys"] = [
            convert.struct_to_dict(jwk) for jwk in spec.department_keys
        ]
    if spec.HasField("timeout"):
        declaration["timeout_seconds"] = convert.duration_seconds(spec.timeout, "spec.timeout")
    if spec.max_concurrency:
        declaration["max_concurrency"] = spec.max_concurrency
    if spec.HasField("heartbeat_interval"):
        declaration["heartbeat_seconds"] = convert.duration_seconds(
            spec.heartbeat_interval, "spec.heartbeat_interval"
        )
    return declaration


def adapter_info(hub: Hub, adapter: Adapter) -> adapters_pb2.AdapterInfo:
    spec = adapter.spec
    catalog = hub.catalog
    info = adapters_pb2.AdapterInfo(
        spec=adapters_pb2.AdapterSpec(
            adapter_id=spec.adapter_id,
            department=spec.department,
            department_uscc=spec.department_uscc,
            kind=_KINDS.get(spec.kind, adapters_pb2.ADAPTER_KIND_UNSPECIFIED),
            serves=[
                adapters_pb2.RecordTypeBinding(
                    record_type=record_type,
                    key_kinds=[common_pb2.KeyKind.Value(f"KEY_KIND_{k}") for k in sorted(kinds)],
                )
                for record_type, kinds in spec.serves.items()
            ],
            timeout=convert.duration(spec.timeout),
            max_concurrency=spec.max_concurrency,
        ),
        health=adapters_pb2.AdapterHealth(
            circuit_state=_CIRCUITS[adapter.circuit_state],
            alive=catalog.down_reason(adapter) is None,
            last_error=adapter.health.last_error,
        ),
        origin=adapters_pb2.ADAPTER_ORIGIN_CONFIG
        if catalog.origin(adapter.adapter_id) == ORIGIN_CONFIG
        else adapters_pb2.ADAPTER_ORIGIN_REGISTERED,
    )
    health = adapter.health
    if health.last_success_at:
        info.health.last_success_at.CopyFrom(convert.timestamp(health.last_success_at))
    if health.last_error_at:
        info.health.last_error_at.CopyFrom(convert.timestamp(health.last_error_at))
    registration = catalog.registration(adapter.adapter_id)
    if registration is not None:
        info.registered_at.CopyFrom(convert.timestamp(registration.registered_at))
        if registration.last_heartbeat_at:
            info.health.last_heartbeat_at.CopyFrom(
                convert.timestamp(registration.last_heartbeat_at)
            )
        if registration.declaration.get("heartbeat_seconds"):
            info.spec.heartbeat_interval.CopyFrom(
                convert.duration(float(registration.declaration["heartbeat_seconds"]))
            )
    return info


class AdapterRegistryServicer(adapters_pb2_grpc.AdapterRegistryServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.registrations = AdapterRegistrations(hub)

    async def List(
        self, request: adapters_pb2.ListRequest, context: Context
    ) -> adapters_pb2.ListResponse:
        return adapters_pb2.ListResponse(
            adapters=[
                adapter_info(self.hub, a)
                for a in self.hub.adapters
                if not request.record_type or request.record_type in a.spec.serves
            ]
        )

    async def Register(
        self, request: adapters_pb2.RegisterRequest, context: Context
    ) -> adapters_pb2.RegisterResponse:
        if not request.HasField("spec"):
            raise InvalidRequest("spec", "an adapter spec is required")
        declaration = declaration_from_proto(request.spec)
        adapter = await self.registrations.register(declaration)
        return adapters_pb2.RegisterResponse(adapter=adapter_info(self.hub, adapter))

    async def Deregister(
        self, request: adapters_pb2.DeregisterRequest, context: Context
    ) -> adapters_pb2.DeregisterResponse:
        if not request.adapter_id:
            raise InvalidRequest("adapter_id", "required")
        await self.registrations.deregister(request.adapter_id)
        return adapters_pb2.DeregisterResponse()

    async def Heartbeat(
        self, request: adapters_pb2.HeartbeatRequest, context: Context
    ) -> adapters_pb2.HeartbeatResponse:
        if not request.adapter_id:
            raise InvalidRequest("adapter_id", "required")
        due = await self.registrations.heartbeat(request.adapter_id)
        answer = adapters_pb2.HeartbeatResponse()
        if due is not None:
            answer.next_due_at.CopyFrom(convert.timestamp(due))
        return answer
