"""Build adapters of every kind, from configuration or from a run-time registration.

Options are validated eagerly, when the adapter is built: an unknown option name, a
missing one or a bad value fails the build, naming the option. Building never
connects to the department; the first call does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from adapters.base import Adapter, AdapterSpec
from adapters.file_adapter import FileAdapter
from adapters.grpc_adapter import GrpcAdapter
from adapters.http_adapter import HttpAdapter
from adapters.python import load_plugin
from adapters.sql_adapter import SqlAdapter
from domain.adapter_settings import AdapterSettings
from domain.errors import ConfigError, InvalidRequest, TongbanError
from domain.subjects import KeyKind
from signing.trust import TrustedKey

__all__ = ["KINDS", "build_adapter", "build_from_spec", "spec_from_settings"]

KINDS: Final[Mapping[str, Callable[[AdapterSpec], Adapter]]] = {
    "grpc": GrpcAdapter,
    "sql": SqlAdapter,
    "http": HttpAdapter,
    "file": FileAdapter,
}
"""The built-in kinds by name; ``python`` plug-ins are found through their entry point."""

_PYTHON: Final = "python"


def spec_from_settings(settings: AdapterSettings) -> AdapterSpec:
    """The adapter's spec as declared in configuration."""
    serves: dict[str, frozenset[KeyKind]] = {}
    for binding in settings.serves:
        serves[binding.record_type] = serves.get(binding.record_type, frozenset()) | frozenset(
            binding.key_kinds
        )
    return AdapterSpec(
        adapter_id=settings.id,
        kind=settings.kind,
        department=settings.department,
        department_uscc=settings.department_uscc,
        serves=serves,
        timeout=settings.timeout_seconds,
        max_concurrency=settings.max_concurrency,
        options=dict(settings.options),
        failure_threshold=settings.circuit_failure_threshold,
        cooldown=settings.circuit_cooldown_seconds,
        department_keys=department_keys(settings),
    )


def department_keys(settings: AdapterSettings) -> tuple[TrustedKey, ...]:
    """The adapter's department keys as trusted keys. Raises `ConfigError`."""
    keys: list[TrustedKey] = []
    for position, jwk in enumerate(settings.department_keys):
        member = f"adapters.{settings.id}.department_keys[{position}]"
        if settings.kind not in ("grpc", "http"):
            raise ConfigError(member, "only grpc and http adapters carry department signatures")
        if not settings.department_uscc:
            raise ConfigError(member, "department keys need the adapter's department_uscc")
        try:
            keys.append(
                TrustedKey.from_jwk(
                    {
                        "tongban_issuer": settings.department_uscc,
                        "tongban_issuer_department": settings.department,
                        "tongban_status": "active",
                        "tongban_not_before": "1970-01-01T00:00:00Z",
                        **jwk,
                    }
                )
            )
        except TongbanError as exc:
            raise ConfigError(member, exc.message) from exc
    return tuple(keys)


def build_adapter(settings: AdapterSettings, setting: str) -> Adapter:
    """Instantiate the configured adapter.

    `setting` names the adapter in the configuration (``adapters[2]``). Raises
    `ConfigError` naming the bad setting (``adapters[2].options.base_url``).
    """
    spec = spec_from_settings(settings)
    if spec.kind == _PYTHON:
        return load_plugin(spec, setting)
    build = KINDS.get(spec.kind)
    if build is None:
        raise ConfigError(f"{setting}.kind", f"unknown adapter kind {spec.kind!r}")
    try:
        return build(spec)
    except InvalidRequest as exc:
        raise ConfigError(f"{setting}.{exc.field}", exc.rule) from exc


def build_from_spec(spec: AdapterSpec) -> Adapter:
    """Instantiate an adapter registered at run time (`AdapterRegistry.Register`).

    Raises `InvalidRequest` naming the request field: ``spec.kind`` for an unknown
    kind, ``spec.settings.<option>`` for a bad option.
    """
    if spec.kind == _PYTHON:
        try:
            return load_plugin(spec, "spec")
        except ConfigError as exc:
            # load_plugin names "spec.options.<name>"; the request calls them settings.
            field = exc.setting.replace("spec.options.", "spec.settings.", 1)
            raise InvalidRequest(field, exc.rule) from exc
    build = KINDS.get(spec.kind)
    if build is None:
        known = ", ".join(sorted([*KINDS, _PYTHON]))
        raise InvalidRequest("spec.kind", f"unknown adapter kind {spec.kind!r} (known: {known})")
    try:
        return build(spec)
    except InvalidRequest as exc:
        raise InvalidRequest("spec.settings" + exc.field.removeprefix("options"), exc.rule) from exc
