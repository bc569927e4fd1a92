"""Prometheus metrics of the hub. Exposed over HTTP by the operator endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RPC_LATENCY = Histogram(
    "tongban_rpc_duration_seconds",
    "Time to answer one tongban.v1 call, by method and status code.",
    ("method", "code"),
    buckets=_LATENCY_BUCKETS,
)
ADAPTER_LATENCY = Histogram(
    "tongban_adapter_fetch_duration_seconds",
    "Time one adapter took to answer a fetch, by adapter and outcome.",
    ("adapter", "outcome"),
    buckets=_LATENCY_BUCKETS,
)
ADAPTER_ERRORS = Counter(
    "tongban_adapter_errors_total",
    "Adapter fetches that failed, by adapter and outcome.",
    ("adapter", "outcome"),
)
CERTIFICATES_ISSUED = Counter(
    "tongban_certificates_issued_total",
    "E-certificates issued (new versions included), by type.",
    ("type_code",),
)
CERTIFICATES_VERIFIED = Counter(
    "tongban_certificates_verified_total",
    "Verifications answered, by outcome.",
    ("valid",),
)
HTTP_LATENCY = Histogram(
    "tongban_http_api_duration_seconds",
    "Time to answer one /api/v1 call, by the tongban.v1 method it serves and HTTP status.",
    ("method", "status"),
    buckets=_LATENCY_BUCKETS,
)
