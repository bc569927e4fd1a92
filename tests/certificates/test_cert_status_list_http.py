"""A certificate's status_list_uri answers the signed status list, cacheably (W3C style)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import pytest

from exchange.generated import certificates_pb2, verification_pb2
from exchange.hub import Hub
from exchange.server import HubServer
from signing.status_list import StatusList, StatusPurpose

from .cert_testkit import certificates, licence_issue, settings_for, verification

pytestmark = pytest.mark.postgres

PUBLIC_URL = "https://hub.example.gov.cn"


async def test_the_status_list_uri_serves_the_signed_list_with_caching_headers(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(
        database_url,
        tmp_path,
        **{"signing.public_url": PUBLIC_URL},
    )
    server = HubServer(Hub.open(settings), "127.0.0.1:0", "127.0.0.1:0")
    await server.start()
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.web.port}") as web,
        ):
            issued = await certificates(channel).Issue(licence_issue())
            index = issued.certificate.status_list_index
            trust = await verification(channel).GetTrustBundle(
                verification_pb2.GetTrustBundleRequest()
            )
            root = json.loads(trust.root_public_jwk)

            first = await web.get("/status/1")
            assert first.status_code == 200
            assert first.headers["content-type"] == "application/jose"
            assert "max-age=" in first.headers["cache-control"]
            etag = first.headers["etag"]
            listed = StatusList.load(first.text, root, datetime.now(UTC))
            assert listed.uri == f"{PUBLIC_URL}/status/1"
            assert not listed.get(index, StatusPurpose.REVOCATION)

            unchanged = await web.get("/status/1", headers={"If-None-Match": etag})
            assert unchanged.status_code == 304
            assert unchanged.content == b""

            await certificates(channel).Revoke(
                certificates_pb2.RevokeRequest(
                    certificate_id=issued.certificate.id, reason="以欺骗手段取得登记"
                )
            )
            changed = await web.get("/status/1", headers={"If-None-Match": etag})
            assert changed.status_code == 200
            assert changed.headers["etag"] != etag
            revoked = StatusList.load(changed.text, root, datetime.now(UTC), previous=listed)
            assert revoked.get(index, StatusPurpose.REVOCATION)
    finally:
        await server.stop(grace=0.5)
