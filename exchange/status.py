"""The one place where Tongban's error tree becomes gRPC status codes and HTTP problems.

Field errors carry a `google.rpc.BadRequest` detail naming the field and the rule, so
stock clients can show which field is at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from domain.errors import (
    AdapterError,
    AlreadyExists,
    ConfigError,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    StoreError,
    TongbanError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    VerificationError,
)


@dataclass(frozen=True, slots=True)
class ErrorMapping:
    """How one class of the error tree is told on each transport."""

    grpc: grpc.StatusCode
    http: int
    # RFC 9457 problem type: a URN naming the kind of problem (the gRPC code's name).
    problem_type: str
    title: str


def _mapping(code: grpc.StatusCode, http: int, title: str) -> ErrorMapping:
    return ErrorMapping(code, http, f"{PROBLEM_TYPE_PREFIX}{code.name.lower()}", title)


PROBLEM_TYPE_PREFIX = "urn:tongban:problem:"

# The one table. Order matters: the first class `isinstance` matches wins.
ERROR_TABLE: tuple[tuple[type[TongbanError], ErrorMapping], ...] = (
    (InvalidRequest, _mapping(grpc.StatusCode.INVALID_ARGUMENT, 400, "Invalid request")),
    (NotFound, _mapping(grpc.StatusCode.NOT_FOUND, 404, "Not found")),
    (AlreadyExists, _mapping(grpc.StatusCode.ALREADY_EXISTS, 409, "Already exists")),
    (PermissionDenied, _mapping(grpc.StatusCode.PERMISSION_DENIED, 403, "Permission denied")),
    (Unauthenticated, _mapping(grpc.StatusCode.UNAUTHENTICATED, 401, "Unauthenticated")),
    (
        FailedPrecondition,
        _mapping(grpc.StatusCode.FAILED_PRECONDITION, 409, "Failed precondition"),
    ),
    (
        VerificationError,
        _mapping(grpc.StatusCode.FAILED_PRECONDITION, 409, "Failed precondition"),
    ),
    (ConfigError, _mapping(grpc.StatusCode.FAILED_PRECONDITION, 409, "Failed precondition")),
    (Unimplemented, _mapping(grpc.StatusCode.UNIMPLEMENTED, 501, "Not implemented")),
    (AdapterError, _mapping(grpc.StatusCode.UNAVAILABLE, 503, "Unavailable")),
    (StoreError, _mapping(grpc.StatusCode.UNAVAILABLE, 503, "Unavailable")),
    (Unavailable, _mapping(grpc.StatusCode.UNAVAILABLE, 503, "Unavailable")),
)
_FALLBACK = _mapping(grpc.StatusCode.FAILED_PRECONDITION, 409, "Failed precondition")
# Bad input the HTTP transport itself refuses before any error class exists.
PAYLOAD_TOO_LARGE = ErrorMapping(
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    413,
    f"{PROBLEM_TYPE_PREFIX}resource_exhausted",
    "Request too large",
)
INTERNAL = _mapping(grpc.StatusCode.INTERNAL, 500, "Internal error")


def mapping_for(error: TongbanError) -> ErrorMapping:
    """How `error` is told on every transport."""
    for error_type, mapping in ERROR_TABLE:
        if isinstance(error, error_type):
            return mapping
    return _FALLBACK


def status_code_for(error: TongbanError) -> grpc.StatusCode:
    """The gRPC status code that `error` maps to."""
    return mapping_for(error).grpc


def problem_for(error: TongbanError, instance: str = "") -> dict[str, Any]:
    """`error` as an RFC 9457 problem details object (naming the field and rule)."""
    mapping = mapping_for(error)
    problem: dict[str, Any] = {
        "type": mapping.problem_type,
        "title": mapping.title,
        "status": mapping.http,
        "detail": caller_message(error),
        "code": mapping.grpc.name,
    }
    if instance:
        problem["instance"] = instance
    if isinstance(error, InvalidRequest):
        problem["field"] = error.field
        problem["rule"] = error.rule
    return problem


def caller_message(error: TongbanError) -> str:
    """What the caller is told of `error`.

    A database failure says what could not be done, not the driver's words, which name
    where the store lives (host, port, database); the hub's log keeps them.
    """
    if isinstance(error, StoreError) and "database error:" in error.message:
        what = error.message.split("database error:", 1)[0].rstrip(": ")
        return (
            f"{what}: the hub's store is unavailable" if what else "the hub's store is unavailable"
        )
    return error.message


def to_status(error: TongbanError) -> grpc.Status:
    """Build the rich gRPC status for `error`, with BadRequest details for field errors."""
    code = status_code_for(error)
    status = status_pb2.Status(code=code.value[0], message=caller_message(error))
    if isinstance(error, InvalidRequest):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field, description=error.rule
                    )
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def internal_status(request_id: str) -> grpc.Status:
    """The status for a failure that is a bug in the hub, never for bad input."""
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL,
            message=f"internal error; the hub logged it under request id {request_id}",
        )
    )
