"""Servicers for capabilities that are not built yet.

Each method answers UNIMPLEMENTED with a sentence saying what is missing, so a caller
never mistakes a placeholder for a working service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

from domain.errors import Unimplemented
from exchange.generated import adapters_pb2_grpc


def _not_yet(capability: str) -> Any:
    async def method(self: object, request: object, context: object) -> NoReturn:
        raise Unimplemented(f"{capability} is not available in this version of the hub yet")

    return method


def _not_yet_streaming(capability: str) -> Any:
    async def method(self: object, request: object, context: object) -> AsyncIterator[NoReturn]:
        raise Unimplemented(f"{capability} is not available in this version of the hub yet")
        yield  # pragma: no cover - makes this an async generator, as streaming RPCs are

    return method


class PendingDepartmentAdapterServicer(adapters_pb2_grpc.DepartmentAdapterServicer):
    # A hub answering as a department source lets one hub feed another (city to province).
    _what = "serving this hub's records to another hub (DepartmentAdapter)"
    Fetch = _not_yet(_what)
    Changes = _not_yet_streaming(_what)
