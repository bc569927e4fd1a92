"""Builders shared by the e-certificate tests: the test types, requests, stubs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from domain.subjects import KeyKind, parse_key
from exchange.certificates.lifecycle import IssueRequest
from exchange.generated import (
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
    verification_pb2,
    verification_pb2_grpc,
)
from exchange.server import HubServer
from exchange.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "tongban.example.toml"

LICENCE = "11100000000013338W001"  # 营业执照, in the example configuration
AMR = "11320100MB1111116K"  # 南京市市场监督管理局, its issuer
RESIDENCE = "11100000000013338W002"  # 居住证, a test type held by people
PSB = "11320100MB0000000J"  # 南京市公安局, its issuer
COMPANY = "91350100M000100Y43"
OTHER_COMPANY = "91320102MA1UXW2B65"
PERSON = "11010519491231002X"


# The signing profiles the certificate tables run under: the international suite
# (EdDSA), the GM suite (SM2 over SM3 everywhere), and dual-signed licences (EdDSA
# primary + SM2) on an international hub.
SUITES = ["international", "gm", "dual"]


def certificate_types(dual: bool = False) -> dict[str, Any]:
    """Both test types, as `certificate_types` configuration (`dual`: the licence is
    dual-signed, EdDSA then SM2)."""
    extra: dict[str, Any] = {"algorithms": ["EdDSA", "SM2"]} if dual else {}
    return {
        LICENCE: {
            **extra,
            "name": "营业执照",
            "holder_kind": "USCC",
            "issuer_uscc": AMR,
            "issuer_department": "南京市市场监督管理局",
            "fields": {
                "name": "string",
                "legal_representative": "string",
                "registered_capital_cny": "integer",
                "established": "date",
                "address": "string",
            },
            "optional_fields": {"business_scope": "string", "company_type": "string"},
        },
        RESIDENCE: {
            "name": "居住证",
            "holder_kind": "ID_CARD",
            "issuer_uscc": PSB,
            "issuer_department": "南京市公安局",
            "fields": {"name": "string", "address": "string", "registered_on": "datetime"},
            "optional_fields": {"remarks": "array"},
            "validity_days": 365,
        },
    }


def settings_for(
    database_url: str, data_dir: Path, suite: str = "international", **overrides: Any
) -> Settings:
    """The example configuration on `database_url`, with both test certificate types,
    under signing profile `suite` (one of SUITES)."""
    if suite == "gm":
        overrides = {"crypto.suite": "gm", **overrides}
    return load_settings(
        EXAMPLE,
        data_dir=str(data_dir),
        certificate_types=certificate_types(dual=suite == "dual"),
        **{"database.url": database_url, "http.listen": "", **overrides},
    )


def all_tokens(certificate: Any) -> list[str]:
    """Every token of a certificate (protobuf or stored): two when dual-signed."""
    second = getattr(certificate, "second_token", None)
    return [certificate.token, *([second] if second else [])]


StartServer = Callable[..., Awaitable[HubServer]]


def licence_fields(**changes: Any) -> dict[str, Any]:
    """Fields of a realistic business licence."""
    fields: dict[str, Any] = {
        "name": "南京通办科技有限公司",
        "legal_representative": "张三",
        "registered_capital_cny": 1_000_000,
        "established": "2019-05-20",
        "address": "江苏省南京市玄武区中山路1号",
        "business_scope": "软件开发；信息技术咨询服务",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def licence_request(
    holder: str = COMPANY, request_id: str | None = None, **changes: Any
) -> IssueRequest:
    """A domain request to issue a business licence."""
    return IssueRequest(
        request_id=request_id or uuid.uuid4().hex,
        type_code=LICENCE,
        holder=parse_key(KeyKind.USCC, holder),
        fields=licence_fields(**changes),
    )


def struct(fields: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(dict(fields))
    return message


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(moment.timestamp()))


def licence_issue(
    holder: str = COMPANY,
    request_id: str | None = None,
    fields: Mapping[str, Any] | None = None,
    **extra: Any,
) -> certificates_pb2.IssueRequest:
    """A protobuf Issue request for a business licence."""
    return certificates_pb2.IssueRequest(
        request_id=request_id or uuid.uuid4().hex,
        type_code=LICENCE,
        holder=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value=holder),
        fields=struct(licence_fields() if fields is None else fields),
        **extra,
    )


def certificates(channel: grpc.aio.Channel) -> certificates_pb2_grpc.CertificateServiceStub:
    return certificates_pb2_grpc.CertificateServiceStub(channel)


def verification(channel: grpc.aio.Channel) -> verification_pb2_grpc.VerificationServiceStub:
    return verification_pb2_grpc.VerificationServiceStub(channel)


def failed_checks(verdict: verification_pb2.Verdict) -> list[str]:
    """Names of the failed checks (CHECK_NAME_ dropped), in order."""
    return [
        verification_pb2.CheckName.Name(c.check).removeprefix("CHECK_NAME_")
        for c in verdict.checks
        if not c.passed
    ]


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a call ends with (the test fails if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


def bad_field(error: grpc.aio.AioRpcError) -> str:
    """The field a google.rpc.BadRequest detail names."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT without a rich status"
    for detail in status.details:
        request = error_details_pb2.BadRequest()
        if detail.Unpack(request):
            return str(request.field_violations[0].field)
    raise AssertionError("no BadRequest detail")
