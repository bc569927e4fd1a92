"""The one mapping from the error tree to gRPC status codes."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from domain import errors
from exchange.status import status_code_for, to_status

MAPPING = [
    (errors.InvalidRequest("purpose.case_id", "required"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidKey("ID_CARD", "bad check"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound("no such certificate"), grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists("exists"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.FailedPrecondition("state"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unimplemented("later"), grpc.StatusCode.UNIMPLEMENTED),
    (errors.AdapterError("a", "down"), grpc.StatusCode.UNAVAILABLE),
    (errors.StoreError("db down"), grpc.StatusCode.UNAVAILABLE),
    (errors.VerificationError("bad"), grpc.StatusCode.FAILED_PRECONDITION),
]


@pytest.mark.parametrize(("error", "code"), MAPPING, ids=[type(e).__name__ for e, _ in MAPPING])
def test_every_error_maps_to_a_specific_code(error, code):
    assert status_code_for(error) is code
    assert to_status(error).code is code


def test_field_errors_carry_bad_request_details():
    status = to_status(errors.InvalidKey("USCC", "character 'I' is excluded"))
    detail = rpc_status.status_pb2.Status.FromString(
        dict(status.trailing_metadata)["grpc-status-details-bin"]
    ).details[0]
    bad = error_details_pb2.BadRequest()
    assert detail.Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("subject.value", "USCC: character 'I' is excluded")
    ]
