"""The gRPC server: every `tongban.v1` service, health checking, reflection, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import structlog
from aiohttp import web
from grpc_health.v1 import _async as health_aio  # the package's own aio servicer
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from certstore.audit import StoredTreeHead
from domain.errors import ConfigError, TongbanError
from exchange.auth.gate import Gate
from exchange.generated import (
    access_pb2,
    access_pb2_grpc,
    adapters_pb2,
    adapters_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    certificates_pb2,
    certificates_pb2_grpc,
    exchange_pb2,
    exchange_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)
from exchange.http.api import ApiApplication, api_ssl_context
from exchange.http.routes import PREFIX
from exchange.hub import Hub
from exchange.interceptors import TongbanInterceptor
from exchange.services.audit import AuditServicer
from exchange.services.catalog import AccessServicer, CatalogServicer
from exchange.services.certificates import CertificateServicer
from exchange.services.exchange import ExchangeServicer
from exchange.services.pending import PendingDepartmentAdapterServicer
from exchange.services.registry import AdapterRegistryServicer
from exchange.services.sync import SyncServicer
from exchange.services.verification import VerificationServicer
from exchange.settings import Settings
from exchange.sync.node import SyncNode
from exchange.web import OperatorWeb

log = structlog.get_logger("tongban.server")

SERVICE_NAMES = tuple(
    descriptor.full_name
    for descriptor in (
        exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"],
        adapters_pb2.DESCRIPTOR.services_by_name["AdapterRegistry"],
        adapters_pb2.DESCRIPTOR.services_by_name["DepartmentAdapter"],
        certificates_pb2.DESCRIPTOR.services_by_name["CertificateService"],
        verification_pb2.DESCRIPTOR.services_by_name["VerificationService"],
        sync_pb2.DESCRIPTOR.services_by_name["SyncService"],
        audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
        catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
        access_pb2.DESCRIPTOR.services_by_name["AccessService"],
    )
)
HEALTH_PROBE_SECONDS = 5.0

# How each service is added to a grpc.aio server, by its full name.
_ADD_SERVICER: dict[str, Callable[[Any, grpc.aio.Server], None]] = {
    "tongban.v1.ExchangeService": exchange_pb2_grpc.add_ExchangeServiceServicer_to_server,
    "tongban.v1.AdapterRegistry": adapters_pb2_grpc.add_AdapterRegistryServicer_to_server,
    "tongban.v1.DepartmentAdapter": adapters_pb2_grpc.add_DepartmentAdapterServicer_to_server,
    "tongban.v1.CertificateService": (
        certificates_pb2_grpc.add_CertificateServiceServicer_to_server
    ),
    "tongban.v1.VerificationService": (
        verification_pb2_grpc.add_VerificationServiceServicer_to_server
    ),
    "tongban.v1.SyncService": sync_pb2_grpc.add_SyncServiceServicer_to_server,
    "tongban.v1.AuditService": audit_pb2_grpc.add_AuditServiceServicer_to_server,
    "tongban.v1.CatalogService": catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
    "tongban.v1.AccessService": access_pb2_grpc.add_AccessServiceServicer_to_server,
}


def servicers(hub: Hub) -> dict[str, object]:
    """Every tongban.v1 servicer by service name: the gRPC server and the HTTP API
    (`exchange.http`) serve these same objects."""
    return {
        "tongban.v1.ExchangeService": ExchangeServicer(hub),
        "tongban.v1.AdapterRegistry": AdapterRegistryServicer(hub),
        "tongban.v1.DepartmentAdapter": PendingDepartmentAdapterServicer(),
        "tongban.v1.CertificateService": CertificateServicer(hub),
        "tongban.v1.VerificationService": VerificationServicer(hub),
        "tongban.v1.SyncService": SyncServicer(hub),
        "tongban.v1.AuditService": AuditServicer(hub),
        "tongban.v1.CatalogService": CatalogServicer(hub),
        "tongban.v1.AccessService": AccessServicer(hub),
    }


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """mTLS: the hub's certificate, and client certificates required from the CA.

    Raises `ConfigError` when a file cannot be read.
    """
    security = settings.security
    files = {
        "tls_cert_file": security.tls_cert_file,
        "tls_key_file": security.tls_key_file,
        "client_ca_file": security.client_ca_file,
    }
    material: dict[str, bytes] = {}
    for name, path in files.items():
        if path is None:
            raise ConfigError(f"security.{name}", "required in production mode")
        try:
            material[name] = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"security.{name}", f"cannot read {path}: {exc}") from exc
    return grpc.ssl_server_credentials(
        [(material["tls_key_file"], material["tls_cert_file"])],
        root_certificates=material["client_ca_file"],
        require_client_auth=True,
    )


def signing_ready(hub: Hub) -> bool:
    """True when this node can sign (its root key signs bundles and status lists).

    Never raises: an unreachable store is simply not ready.
    """
    try:
        return hub.certificates.signing_problem() is None
    except TongbanError:
        return False


class HubServer:
    """A running grpc.aio server bound to one hub."""

    def __init__(
        self,
        hub: Hub,
        listen: str,
        http_listen: str | None = None,
        api_listen: str | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        """`http_listen`, when given, also serves the HTTP port (metrics, verification,
        and in dev mode the HTTP/JSON API); `api_listen` serves the API on its own port
        (HTTPS with client certificates in production mode).

        `reuse_port` shares the ports with other processes that ask for it too
        (``SO_REUSEPORT``: `tongban serve --workers N`); without it a taken port is
        a `ConfigError`, whoever holds it.
        """
        self.hub = hub
        self.http_listen = http_listen
        self.api_listen = api_listen
        self.reuse_port = reuse_port
        self.web = OperatorWeb(hub)
        limit = hub.settings.server.max_message_bytes
        gate = Gate(hub.resolver, hub.policy, hub.audit)
        self.servicers = servicers(hub)
        self.api = ApiApplication(self.servicers, gate, hub.settings)
        self._api_runner: web.AppRunner | None = None
        self.api_port = 0
        if api_listen is None and hub.settings.server.mode == "dev":
            self.web.mount_api(self.api.app, PREFIX)
        self.server = grpc.aio.server(
            interceptors=[TongbanInterceptor(gate)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ],
        )
        self.health = health_aio.HealthServicer()
        self._add_services()
        try:
            if hub.settings.server.mode == "production":
                self.port = self.server.add_secure_port(listen, server_credentials(hub.settings))
            else:
                self.port = self.server.add_insecure_port(listen)
        except RuntimeError:  # grpc's "Failed to bind"
            self.port = 0
        if self.port == 0:
            raise ConfigError(
                "server.listen",
                f"cannot listen on {listen}: the address is in use or not this host's",
            )
        self.listen = listen
        # A registered adapter may not point back at this hub (issue 16 §1).
        hub.catalog.rules.note_listener(listen, self.port)
        self._probe: asyncio.Task[None] | None = None
        self._last_tree_head = float("-inf")
        self.sync: SyncNode | None = None

    def _add_services(self) -> None:
        server = self.server
        for name, servicer in self.servicers.items():
            _ADD_SERVICER[name](servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )

    async def start(self) -> None:
        if self.hub.settings.server.mode == "dev":
            log.warning(
                "dev mode: plaintext gRPC, callers identified by dev tokens at most; "
                "never expose this port"
            )
        self.hub.start()
        self.sync = SyncNode(self.hub)
        self.sync.start()
        await self.server.start()
        if self.http_listen is not None:
            try:
                http_port = await self.web.start(self.http_listen, reuse_port=self.reuse_port)
            except OSError as exc:
                await self.stop(grace=0)
                raise ConfigError(
                    "http.listen", f"cannot listen on {self.http_listen}: {exc.strerror or exc}"
                ) from exc
            self.hub.catalog.rules.note_listener(self.http_listen, http_port)
            log.info("http serving", listen=self.http_listen, port=http_port)
        await self._start_api()
        await self.report_health()
        self._probe = asyncio.create_task(self._probe_forever())
        log.info(
            "hub serving", listen=self.listen, port=self.port, mode=self.hub.settings.server.mode
        )

    async def _start_api(self) -> None:
        """Serve the HTTP/JSON API on its own port, when configured. Raises `ConfigError`."""
        production = self.hub.settings.server.mode == "production"
        if self.api_listen is None:
            if production:
                log.info("http api not served: set http.api_listen to serve it over HTTPS")
            return
        tls = api_ssl_context(self.hub.settings) if production else None
        host, _, port = self.api_listen.rpartition(":")
        runner = web.AppRunner(self.api.standalone(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(
                runner,
                host.strip("[]"),
                int(port),
                ssl_context=tls,
                reuse_port=self.reuse_port or None,
            ).start()
        except OSError as exc:
            await runner.cleanup()
            await self.stop(grace=0)
            raise ConfigError(
                "http.api_listen", f"cannot listen on {self.api_listen}: {exc.strerror or exc}"
            ) from exc
        self._api_runner = runner
        self.api_port = int(runner.addresses[0][1])
        log.info("http api serving", listen=self.api_listen, port=self.api_port, tls=production)

    async def report_health(self) -> None:
        """Set every service SERVING or NOT_SERVING from the store and the signing key."""
        ok = await asyncio.to_thread(self.hub.database.ping) and await asyncio.to_thread(
            signing_ready, self.hub
        )
        state = (
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, state)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_PROBE_SECONDS)
            await self.report_health()
            try:
                await self.hub.refresh()
            except TongbanError as exc:
                log.warning("adapter registrations not refreshed", error=exc.message)
            now = time.monotonic()
            if now - self._last_tree_head < self.hub.settings.audit.tree_head_seconds:
                continue
            self._last_tree_head = now
            try:
                await self.hub.access.expire_overdue()
            except TongbanError as exc:
                log.warning("access applications not expired", error=exc.message)
            try:
                await asyncio.to_thread(self.sign_audit_checkpoint)
            except TongbanError as exc:
                log.warning("audit tree head not signed", error=exc.message)

    def sign_audit_checkpoint(self) -> StoredTreeHead | None:
        """Publish a signed tree head when the audit log grew (blocking).

        Raises `StoreError`; does nothing when this node has no root key.
        """
        return self.hub.sign_tree_head()

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight calls finish within `grace`, then stop."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self.health.enter_graceful_shutdown()
        await self.web.stop()
        if self._api_runner is not None:
            await self._api_runner.cleanup()
            self._api_runner = None
        await self.server.stop(
            self.hub.settings.server.shutdown_grace_seconds if grace is None else grace
        )
        if self.sync is not None:
            await self.sync.stop()
        await self.hub.close()
        log.info("hub stopped")


async def serve_until_signalled(
    hub: Hub,
    listen: str,
    on_ready: Callable[[int], None] | None = None,
    *,
    reuse_port: bool = False,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (`reuse_port`: as a
    worker of `tongban serve --workers N`, see `HubServer`)."""
    server = HubServer(
        hub,
        listen,
        hub.settings.http.listen,
        hub.settings.http.api_listen,
        reuse_port=reuse_port,
    )
    await server.start()
    if on_ready is not None:
        on_ready(server.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutdown requested; finishing in-flight calls")
    await server.stop()
