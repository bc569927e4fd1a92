"""The hub's HTTP port: Prometheus metrics and health for operators.

It runs beside the gRPC server on its own port (`[http] listen`). The verification
page for people holding an e-certificate is served here too (`exchange.verify_page`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from adapters.resilience import CircuitState
from certstore.cursors import last_synced
from exchange.auth.identity import set_current_caller
from exchange.auth.policy import Caller
from exchange.certificates.documents import field_text
from exchange.certificates.verification import OnlineVerdict, Presented
from exchange.hub import Hub
from exchange.services.verification import VerificationServicer
from exchange.verify_page import PageVerdict, add_verification_routes
from signing import Certificate

_CIRCUIT_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# RFC 7515 §9.2.1: the compact serialization of a JWS.
STATUS_LIST_CONTENT_TYPE = "application/jose"
STATUS_MAX_AGE_SECONDS = 60
# Who the audit trail names when a certificate is looked up through the page.
PUBLIC_PAGE = Caller(organization="public", system="verification-page")


class HubCollector(Collector):
    """Gauges read from the hub when scraped: circuit states, the audit chain length."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily]:
        circuits = GaugeMetricFamily(
            "tongban_adapter_circuit_state",
            "Circuit breaker state per adapter: 0 closed, 1 half-open, 2 open.",
            labels=["adapter"],
        )
        alive = GaugeMetricFamily(
            "tongban_adapter_alive", "1 when the adapter is not marked down.", labels=["adapter"]
        )
        for adapter in self.hub.adapters:
            circuits.add_metric([adapter.adapter_id], _CIRCUIT_VALUES[adapter.circuit_state])
            down = self.hub.catalog.down_reason(adapter)
            alive.add_metric([adapter.adapter_id], 0 if down else 1)
        yield circuits
        yield alive
        lag = GaugeMetricFamily(
            "tongban_sync_lag_seconds",
            "Seconds since the adapter's sync cursor last advanced.",
            labels=["adapter"],
        )
        now = datetime.now(UTC)
        for adapter_id, synced_at in last_synced(self.hub.database).items():
            lag.add_metric([adapter_id], (now - synced_at).total_seconds())
        yield lag
        sequence, _ = self.hub.audit.store.head()
        yield GaugeMetricFamily(
            "tongban_audit_chain_length", "Entries in the audit hash chain.", value=sequence
        )


class OperatorWeb:
    """The aiohttp application on the hub's HTTP port."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(HubCollector(hub))
        self.app = web.Application()
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/healthz", self.health)
        # Where certificates' status_list_uri points (`<signing.public_url>/status/1`).
        self.app.router.add_get("/status/1", self.status_list)
        add_verification_routes(self.app, self.verify, self.shown_fields)
        self._verification = VerificationServicer(hub)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def mount_api(self, api: web.Application, prefix: str) -> None:
        """Serve the HTTP/JSON API under `prefix` on this port too (dev mode)."""
        self.app.add_subapp(prefix, api)

    async def metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(
            lambda: generate_latest(REGISTRY) + generate_latest(self.registry)
        )
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def verify(self, presented: Presented) -> PageVerdict:
        """Verify what the page was shown, exactly as `VerificationService.Verify` does
        (a lookup by id is audited under the holder, as made by the public page)."""
        set_current_caller(PUBLIC_PAGE)
        online = await self._verification.verify_any(presented)
        if isinstance(online, OnlineVerdict) and online.suites:
            return online.verdict, online.suites
        return online.verdict

    def shown_fields(self, certificate: Certificate) -> list[tuple[str, str, str]]:
        """The data fields the certificate's type shows to verifiers, labelled."""
        kind = self.hub.certificates.types.find(certificate.type_code)
        if kind is None:
            return []
        shown = []
        for name in kind.verifier_fields:
            if name in certificate.fields:
                zh, en = kind.field_label(name)
                shown.append((zh, en, field_text(certificate.fields[name])))
        return shown

    async def status_list(self, request: web.Request) -> web.Response:
        """The signed status list (compact JWS), cacheable and revalidatable by ETag.

        A verifier may keep it `STATUS_MAX_AGE_SECONDS` (never past its next update) and
        then revalidate with If-None-Match: unchanged lists cost a 304 and no body.
        """
        publisher = self.hub.certificates.trust
        cached = publisher.cached()
        trust = cached if cached is not None else await asyncio.to_thread(publisher.current)
        token = trust.status_token
        if token is None:
            return web.json_response(
                {
                    "type": "about:blank",
                    "title": "Service Unavailable",
                    "status": 503,
                    "detail": "the hub has no root key yet, so it publishes no status list",
                },
                status=503,
                content_type="application/problem+json",
                headers={"Retry-After": "60"},
            )
        etag = f'"{hashlib.sha256(token.encode()).hexdigest()[:32]}"'
        remaining = (trust.next_update - datetime.now(UTC)).total_seconds()
        max_age = max(0, min(STATUS_MAX_AGE_SECONDS, int(remaining)))
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={max_age}, must-revalidate",
            "Expires": format_datetime(trust.next_update, usegmt=True),
            "Access-Control-Allow-Origin": "*",
        }
        if trust.status_list.issued_at is not None:
            headers["Last-Modified"] = format_datetime(trust.status_list.issued_at, usegmt=True)
        sent = request.headers.get("If-None-Match", "")
        if etag in (tag.strip() for tag in sent.split(",")) or sent.strip() == "*":
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=token.encode(), content_type=STATUS_LIST_CONTENT_TYPE, headers=headers
        )

    async def health(self, request: web.Request) -> web.Response:
        database = await asyncio.to_thread(self.hub.database.ping)
        status = 200 if database else 503
        return web.json_response({"database": database}, status=status)

    async def start(self, listen: str, *, reuse_port: bool = False) -> int:
        """Serve on `listen` (HOST:PORT, port 0 picks one); returns the port.

        `reuse_port` shares the port with the other workers of `tongban serve --workers`.
        """
        host, _, port = listen.rpartition(":")
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]"), int(port), reuse_port=reuse_port or None)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
