"""What a run-time registered adapter may be and where it may connect (issue 16 §1).

The rules, in one place, for every transport that registers adapters:

* Kinds. Any department may register the network kinds of ``[registration].kinds``
  (``grpc``, ``http``). ``sql``, ``file`` and ``python`` reach into the hub's own
  machine; a department registers them only where its ``[[registration.departments]]``
  entry lists the kind.
* Targets. A registered network adapter's host and port must match the department's
  ``egress`` allowlist. Every address the host name resolves to is checked, at
  registration and again at every connection (the adapters dial the checked address,
  so DNS rebinding gains nothing). Loopback, link-local, unspecified, multicast and
  reserved addresses, and the hub's own listening ports, are refused unless an entry
  names such an address itself.
* The hub's store. No ``sql`` adapter, configured or registered, may read the hub's own
  database (the same SQLite file by real path, or the same PostgreSQL database); no
  registered ``sql`` or ``file`` adapter may read under the hub's data folder.

Refusals are `PermissionDenied` (or `InvalidRequest` for a target that cannot be
checked at all) with the request field and the rule in the message; what was resolved
goes to the hub's log only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from domain.errors import AdapterError, ConfigError, InvalidRequest, PermissionDenied

if TYPE_CHECKING:
    from domain.adapter_settings import AdapterSettings
    from exchange.settings import Settings

log = structlog.get_logger("tongban.egress")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST_NAME = re.compile(
    r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_SQLITE = ("sqlite",)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_POSTGRES_PORT = 5432


@dataclass(frozen=True)
class EgressEntry:
    """One allowlist entry: a host name pattern or a network, and a port range."""

    text: str
    name: str | None = None
    network: Network | None = None
    ports: tuple[int, int] | None = None

    def port_ok(self, port: int) -> bool:
        return self.ports is None or self.ports[0] <= port <= self.ports[1]

    def name_ok(self, host: str) -> bool:
        if self.name is None:
            return False
        host = host.lower().rstrip(".")
        if self.name.startswith("*."):
            return host.endswith(self.name[1:]) and host != self.name[2:]
        return host == self.name

    @property
    def names_special(self) -> bool:
        """True when the entry's network lies inside a special range (named on purpose)."""
        return self.network is not None and _special_network(self.network)


def parse_egress(text: str) -> EgressEntry:
    """Parse ``HOST[:PORTS]``; raises ValueError saying what is wrong."""
    host, ports = _split_ports(text.strip())
    parsed_ports = _parse_ports(ports, text) if ports is not None else None
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        name = host.lower().rstrip(".")
        if not _HOST_NAME.match(name):
            raise ValueError(
                f"egress entry {text!r}: HOST must be a DNS name, *.suffix, an IP address or a CIDR"
            ) from None
        return EgressEntry(text, name=name, ports=parsed_ports)
    return EgressEntry(text, network=network, ports=parsed_ports)


def _split_ports(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"egress entry {text!r}: write [IPv6]:PORTS")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, ports = text.partition(":")
        return host, ports
    return text, None  # a name, an IPv4 address or network, or a bare IPv6 one


def _parse_ports(text: str, entry: str) -> tuple[int, int] | None:
    if text == "*":
        return None
    low, dash, high = text.partition("-")
    if not (low.isdigit() and (not dash or high.isdigit())):
        raise ValueError(f"egress entry {entry!r}: PORTS must be N, LOW-HIGH or *")
    first, last = int(low), int(high) if dash else int(low)
    if not 0 < first <= last < 65536:
        raise ValueError(f"egress entry {entry!r}: ports must be within 1..65535, low first")
    return first, last


def _special_network(network: Network) -> bool:
    return bool(
        network.is_loopback
        or network.is_link_local
        or network.is_multicast
        or network.is_unspecified
        or network.is_reserved
        or (isinstance(network, ipaddress.IPv4Network) and network.subnet_of(_THIS_NETWORK))
    )


def special_address(address: Address) -> bool:
    """Loopback, link-local, unspecified, multicast, reserved or 0.0.0.0/8."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK)
    )


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (an IP literal resolves to itself).

    Raises `OSError` (socket.gaierror) when it does not resolve.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[Address] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class RegistrationRules:
    """The rules above, built once from the settings; the hub adds its bound ports."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        registration = settings.registration
        self._kinds = frozenset(registration.kinds)
        self._departments = {d.uscc: d for d in registration.departments}
        self._entries = {
            d.uscc: tuple(parse_egress(e) for e in d.egress) for d in registration.departments
        }
        self._own_ports: set[int] = set()
        self._own_hosts: set[Address] = set()
        for listen in (settings.server.listen, settings.http.listen):
            if listen:
                self.note_listener(listen)
        self._data_dir = Path(os.path.realpath(settings.data_dir))

    def note_listener(self, listen: str, port: int | None = None) -> None:
        """Count ``HOST:PORT`` (with the port actually bound, when given) as the hub's own."""
        host, _, configured = listen.rpartition(":")
        self._own_ports.add(port if port else int(configured))
        with contextlib.suppress(ValueError):
            self._own_hosts.add(ipaddress.ip_address(host.strip("[]")))

    # --- kinds ------------------------------------------------------------------

    def kinds_for(self, department_uscc: str) -> frozenset[str]:
        """The kinds `department_uscc` may register at run time."""
        kinds = set(self._kinds)
        for key in (department_uscc, "*"):
            listed = self._departments.get(key)
            if listed is not None:
                kinds.update(listed.kinds)
        return frozenset(kinds)

    def check_kind(self, declaration: Mapping[str, Any]) -> None:
        """Raises `PermissionDenied` when the department may not register this kind."""
        kind = str(declaration.get("kind", ""))
        department = str(declaration.get("department_uscc", ""))
        allowed = self.kinds_for(department)
        if kind not in allowed:
            raise PermissionDenied(
                f"spec.kind: department {department or '(none)'} may not register {kind} "
                f"adapters at run time (allowed: {', '.join(sorted(allowed)) or 'none'}); "
                "the hub operator allows a kind per department in [[registration.departments]]"
            )

    # --- targets ----------------------------------------------------------------

    def check_targets(self, declaration: Mapping[str, Any]) -> None:
        """Check where a (validated) registered adapter would connect or read.

        Raises `PermissionDenied` naming the field and the rule, or `InvalidRequest`
        for a host name that does not resolve.
        """
        kind = str(declaration.get("kind", ""))
        options = declaration.get("options") or {}
        department = str(declaration.get("department_uscc", ""))
        if kind == "grpc":
            host, _, port_text = str(options.get("target", "")).rpartition(":")
            self.check_address(department, host.strip("[]"), int(port_text), "spec.settings.target")
            tls = options.get("tls")
            for name in ("ca_file", "cert_file", "key_file"):
                path = tls.get(name) if isinstance(tls, Mapping) else None
                if path:
                    self._check_file(str(path), f"spec.settings.tls.{name}")
        elif kind == "http":
            host, port = _http_host_port(str(options.get("base_url", "")))
            self.check_address(department, host, port, "spec.settings.base_url")
        elif kind == "sql":
            self._check_sql(department, str(options.get("url", "")))
        elif kind == "file":
            self._check_folder(str(options.get("folder", "")), "spec.settings.folder")

    def check_address(self, department: str, host: str, port: int, field: str) -> list[Address]:
        """Every address of `host` must be allowed for `department`; returns them."""
        entries = self._entries_for(department)
        if not entries:
            raise PermissionDenied(
                f"{field}: department {department or '(none)'} has no egress allowlist; "
                "the hub operator lists its targets in [[registration.departments]] egress"
            )
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is None and not any(
            e.name_ok(host) or e.network is not None for e in entries if e.port_ok(port)
        ):
            raise PermissionDenied(f"{field}: {host}:{port} is not on the department's egress list")
        try:
            addresses = resolve(host, port)
        except OSError as exc:
            log.warning("registered target does not resolve", host=host, error=str(exc))
            raise InvalidRequest(field, f"host {host!r} does not resolve") from exc
        for address in addresses:
            problem = self._refusal(entries, None if literal else host, address, port)
            if problem is not None:
                log.warning(
                    "registered target refused",
                    field=field,
                    host=host,
                    port=port,
                    address=str(address),
                    rule=problem,
                )
                raise PermissionDenied(f"{field}: {host}:{port} {problem}")
        return addresses

    def _entries_for(self, department: str) -> tuple[EgressEntry, ...]:
        return (*self._entries.get(department, ()), *self._entries.get("*", ()))

    def _own(self, address: Address, port: int) -> bool:
        return port in self._own_ports and (special_address(address) or address in self._own_hosts)

    def _refusal(
        self, entries: Sequence[EgressEntry], host: str | None, address: Address, port: int
    ) -> str | None:
        """Why (`address`, `port`) may not be reached, or None when an entry allows it."""
        own = self._own(address, port)
        special = special_address(address)
        for entry in entries:
            if not entry.port_ok(port):
                continue
            in_network = entry.network is not None and address in entry.network
            if own:
                if in_network and entry.ports == (port, port):
                    return None
            elif special:
                if in_network and entry.names_special:
                    return None
            elif in_network or (host is not None and entry.name_ok(host)):
                return None
        if own:
            return "is one of the hub's own listeners"
        if special:
            return (
                "resolves to a loopback, link-local or other special address, which only an "
                "egress entry naming that address allows"
            )
        return "is not on the department's egress list"

    # --- the hub's own data -------------------------------------------------------

    def _check_sql(self, department: str, url: str) -> None:
        field = "spec.settings.url"
        problem = self.store_problem(url)
        if problem is not None:
            raise PermissionDenied(f"{field}: {problem}")
        parsed = _url(url)
        if parsed is None:
            return
        if parsed.drivername.split("+")[0] in _SQLITE:
            self._check_folder(_sqlite_path(parsed.database or ""), field)
            return
        self.check_address(
            department, parsed.host or "localhost", parsed.port or _POSTGRES_PORT, field
        )

    def _check_folder(self, folder: str, field: str) -> None:
        if not folder:
            return
        real = Path(os.path.realpath(folder))
        if (
            real == self._data_dir
            or self._data_dir in real.parents
            or real in self._data_dir.parents
        ):
            log.warning("registered adapter reads the hub's data folder", path=str(real))
            raise PermissionDenied(f"{field}: may not read the hub's own data folder")

    def _check_file(self, path: str, field: str) -> None:
        """A file a registered adapter names (TLS material) is never the hub's own."""
        self._check_folder(path, field)
        security = self._settings.security
        real = os.path.realpath(path)
        own = (security.tls_key_file, security.tls_cert_file)
        if any(p is not None and os.path.realpath(p) == real for p in own):
            raise PermissionDenied(f"{field}: may not use the hub's own TLS files")

    def store_problem(self, url: str) -> str | None:
        """Why a sql adapter's `url` is the hub's own store, or None when it is not."""
        theirs, ours = _url(url), _url(self._settings.database_url)
        if theirs is None or ours is None:
            return None
        their_kind, our_kind = theirs.drivername.split("+")[0], ours.drivername.split("+")[0]
        if their_kind != our_kind:
            return None
        if their_kind in _SQLITE:
            same = os.path.realpath(_sqlite_path(theirs.database or "")) == os.path.realpath(
                _sqlite_path(ours.database or "")
            )
        else:
            same = _same_postgres(theirs, ours)
        return "is the hub's own store; an adapter never reads it" if same else None

    def check_configured(self, adapters: Iterable[AdapterSettings]) -> None:
        """Raises `ConfigError` for a configured sql adapter on the hub's own store."""
        for index, adapter in enumerate(adapters):
            if adapter.kind != "sql":
                continue
            problem = self.store_problem(str(adapter.options.get("url", "")))
            if problem is not None:
                raise ConfigError(f"adapters[{index}].options.url", problem)

    def guard(self, department: str) -> EgressGuard:
        """The connect-time guard of a registered adapter of `department`."""
        return EgressGuard(self, department)


class EgressGuard:
    """`adapters.base.ConnectGuard` over the registration rules of one department."""

    def __init__(self, rules: RegistrationRules, department: str) -> None:
        self._rules = rules
        self._department = department

    def permit(self, host: str, port: int) -> str:
        """Resolve, check every address, return the first. Raises `AdapterError`."""
        try:
            addresses = self._rules.check_address(self._department, host, port, "target")
        except (PermissionDenied, InvalidRequest) as exc:
            raise AdapterError("egress", "the hub's egress rules refuse this target") from exc
        return str(addresses[0])


def _url(text: str) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(text)
    except (ArgumentError, ValueError):
        return None


def _sqlite_path(database: str) -> str:
    """The file of a SQLite URL's database part (``file:`` URIs included)."""
    path = database.removeprefix("file:").partition("?")[0]
    return path or ":memory:"


def _same_postgres(theirs: Any, ours: Any) -> bool:
    if (theirs.port or _POSTGRES_PORT) != (ours.port or _POSTGRES_PORT):
        return False
    if (theirs.database or theirs.username) != (ours.database or ours.username):
        return False
    try:
        their_hosts = set(resolve(theirs.host or "localhost", _POSTGRES_PORT))
        our_hosts = set(resolve(ours.host or "localhost", _POSTGRES_PORT))
    except OSError:
        return (theirs.host or "localhost") == (ours.host or "localhost")
    local = any(special_address(a) for a in their_hosts) and any(
        special_address(a) for a in our_hosts
    )
    return local or bool(their_hosts & our_hosts)


def _http_host_port(base_url: str) -> tuple[str, int]:
    import httpx

    url = httpx.URL(base_url)
    return url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80)
