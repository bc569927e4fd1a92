"""The one place where Tongban's error tree becomes gRPC status codes.

Field errors carry a `google.rpc.BadRequest` detail naming the field and the rule, so
stock clients can show which field is at fault.
"""

from __future__ import annotations

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

_CODES: tuple[tuple[type[TongbanError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (VerificationError, grpc.StatusCode.FAILED_PRECONDITION),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (AdapterError, grpc.StatusCode.UNAVAILABLE),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_code_for(error: TongbanError) -> grpc.StatusCode:
    """The gRPC status code that `error` maps to."""
    for error_type, code in _CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


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
