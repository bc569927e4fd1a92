"""`DemoWorld`: the four simulated departments as real processes, and the hub's settings.

    with DemoWorld(Path("data/demo")) as demo:
        settings = demo.settings(**{"logging.level": "ERROR"})
        hub = Hub.open(settings)  # four adapters: grpc, sql, http, file
        ...
        demo.stop_department("population")  # an outage

Each department runs as ``python -m exchange.demo.departments`` in a session of its own
(so a Ctrl-C meant for the launcher reaches the launcher only, which then stops them in
order) and with ``--exit-with-parent`` (so they stop if the launcher is killed). Their
stderr goes to ``<data_dir>/departments/<name>.log``; their files live in
``<data_dir>/departments/<name>/``; the hub's store is ``<data_dir>/tongban.db``.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import exchange
from domain.errors import FailedPrecondition, TongbanError
from exchange.demo.departments import DEPARTMENTS, REALESTATE_TOKEN_ENV
from exchange.demo.world import (
    DEFAULT_COMPANIES,
    DEFAULT_RESIDENTS,
    DEFAULT_SEED,
    Showcase,
    World,
    generate_world,
    make_uscc,
)
from exchange.settings import Settings, load_settings

__all__ = [
    "ADAPTER_IDS",
    "RECORD_TYPES",
    "DemoWorld",
    "DepartmentStartError",
    "catalogue_record_types",
    "department_uscc",
]

ADAPTER_IDS: Final = {
    "population": "psb.population",
    "business": "amr.business",
    "realestate": "nrb.realestate",
    "social-security": "hrss.social-security",
}
"""The hub's adapter id for each department."""

RECORD_TYPES: Final[dict[str, dict[str, Any]]] = {
    "population.resident": {
        "description": "户籍人口信息 / Registered resident",
        "fields": {
            "name": "string",
            "gender": "string",
            "birth_date": "date",
            "ethnicity": "string",
            "household_address": "string",
            "household_division": "string",
        },
    },
    "market.business_license": {
        "description": "营业执照登记信息 / Business registration",
        "fields": {
            "name": "string",
            "company_type": "string",
            "legal_representative": "string",
            "registered_capital_cny": "integer",
            "established": "date",
            "status": "string",
            "address": "string",
            "business_scope": "string",
            "registration_authority": "string",
            "organization_code": "string",
        },
    },
    "realestate.title": {
        "description": "不动产权登记信息 / Real-estate title",
        "fields": {
            "owner": "string",
            "co_ownership": "string",
            "location": "string",
            "unit_number": "string",
            "area_m2": "number",
            "usage": "string",
            "right_type": "string",
            "right_nature": "string",
            "registered_on": "date",
        },
    },
    "social_security.enrolment": {
        "description": "社会保险参保信息 / Social-insurance enrolment (national vertical system)",
        "fields": {
            "insurance": "string",
            "status": "string",
            "since": "date",
            "employer": "string",
            "employer_uscc": "string",
            "contribution_base_cny": "integer",
        },
    },
}
"""The record types the four departments serve, with their declared fields."""

_DEPARTMENT_NAMES: Final = {
    "population": (
        "南京市公安局人口管理信息系统 / Public Security population registry",
        "320100",
        "MB000000",
    ),
    "business": (
        "南京市市场监督管理局企业登记系统 / Market Regulation business registry",
        "320100",
        "MB111111",
    ),
    "realestate": (
        "南京市规划和自然资源局不动产登记系统 / Natural Resources real-estate registry",
        "320100",
        "MB153274",
    ),
    "social-security": (
        "人力资源和社会保障部社会保险信息系统 / MOHRSS social insurance (national vertical)",
        "100000",
        "MB019834",
    ),
}
"""Each department's name, and the division and organization code body of its USCC."""
_CATALOGUE: Final[dict[str, dict[str, Any]]] = {
    "population.resident": {
        "department": "population",
        "catalogue_id": "320100-GA-0001",
        "sharing": "UNCONDITIONAL",
        "key_kinds": ["ID_CARD"],
        "update_frequency": "实时 / real time",
        "legal_basis": "《政务信息资源共享管理暂行办法》第五条",
    },
    "market.business_license": {
        "department": "business",
        "catalogue_id": "320100-SJ-0001",
        "sharing": "UNCONDITIONAL",
        "key_kinds": ["USCC", "ORG_CODE", "ID_CARD"],
        "update_frequency": "实时 / real time",
        "legal_basis": "《企业信息公示暂行条例》",
    },
    "realestate.title": {
        "department": "realestate",
        "catalogue_id": "320100-ZR-0003",
        "sharing": "UNCONDITIONAL",
        "key_kinds": ["REAL_ESTATE_CERT", "ID_CARD", "REAL_ESTATE_UNIT"],
        "update_frequency": "每日 / daily",
        "legal_basis": "《不动产登记暂行条例》第二十七条",
    },
    "social_security.enrolment": {
        "department": "social-security",
        "catalogue_id": "100000-RS-0007",
        "sharing": "CONDITIONAL",
        "key_kinds": ["ID_CARD"],
        "update_frequency": "每日导出 / daily export",
        "legal_basis": "《社会保险法》第七十四条",
    },
}
"""Each record type's sharing-catalogue terms; its owner is the department serving it."""
_ADAPTER_TIMEOUT: Final = 2.0
# Short enough that the outage step's recovery is seen within the tour.
CIRCUIT_COOLDOWN: Final = 3.0
_REPO_ROOT: Final = Path(exchange.__file__).resolve().parents[1]


def department_uscc(name: str) -> str:
    """The USCC of one of the four departments (``"population"``, ...)."""
    _, division, org_body = _DEPARTMENT_NAMES[name]
    return make_uscc("11", division, org_body)


def catalogue_record_types() -> dict[str, dict[str, Any]]:
    """`RECORD_TYPES` with their catalogue entries: owner, sharing class, terms.

    Social-insurance enrolments are conditionally shared (有条件共享): a hall reads them
    only once the ministry approved its application.
    """
    declared: dict[str, dict[str, Any]] = {}
    for record_type, fields in RECORD_TYPES.items():
        terms = dict(_CATALOGUE[record_type])
        name = terms.pop("department")
        declared[record_type] = {
            **fields,
            **terms,
            "owner_uscc": department_uscc(name),
            "owner_department": _DEPARTMENT_NAMES[name][0],
        }
    return declared


class DepartmentStartError(TongbanError):
    """A department process did not report READY in time; the message says why."""


@dataclass
class _Department:
    name: str
    process: subprocess.Popen[str]
    log_path: Path


class DemoWorld:
    """Starts, stops and describes the demo's four department processes.

    `seed`, `residents` and `companies` choose the world every department builds;
    `business_change_interval` and `export_interval` (seconds, 0 for none) how often the
    business registry changes a company and the social-insurance system writes a delta.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        seed: int = DEFAULT_SEED,
        residents: int = DEFAULT_RESIDENTS,
        companies: int = DEFAULT_COMPANIES,
        business_change_interval: float = 5.0,
        export_interval: float = 10.0,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.seed = seed
        self.residents = residents
        self.companies = companies
        self.change_intervals = {
            "business": business_change_interval,
            "social-security": export_interval,
        }
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._token = secrets.token_urlsafe(24)
        self._running: dict[str, _Department] = {}
        # The last READY of each department, kept after a stop: the hub still points there.
        self._ready: dict[str, dict[str, Any]] = {}

    # --- what the world holds ---------------------------------------------------------

    @functools.cached_property
    def world(self) -> World:
        """The world the departments serve (built here too, from the same seed)."""
        return generate_world(self.seed, residents=self.residents, companies=self.companies)

    @property
    def showcase(self) -> Showcase:
        """The subjects the story looks up: see `World.showcase`."""
        return self.world.showcase()

    @property
    def running(self) -> dict[str, int]:
        """Process ids of the departments running now, by name."""
        return {
            name: d.process.pid for name, d in self._running.items() if d.process.poll() is None
        }

    def ready(self, name: str) -> dict[str, Any]:
        """What department `name` reported when it started (its READY line).

        Raises `FailedPrecondition` when it was never started.
        """
        try:
            return dict(self._ready[name])
        except KeyError:
            raise FailedPrecondition(f"department {name!r} was never started") from None

    # --- processes --------------------------------------------------------------------

    def start(self) -> Self:
        """Start every department not running yet; return when all have reported READY.

        Raises `DepartmentStartError` naming the department that failed (its exit status
        and the end of its log); the ones already started are stopped again.
        """
        missing = [name for name in DEPARTMENTS if name not in self.running]
        self._start(missing)
        return self

    def restart_department(self, name: str) -> None:
        """Start a stopped department again, on the same port as before.

        Raises `DepartmentStartError` when it does not come up.
        """
        if name in self.running:
            return
        self._start([name])

    def stop_department(self, name: str) -> int:
        """Stop one department (SIGTERM, then SIGKILL after `stop_timeout`).

        Returns its exit status (0 for a clean stop). Raises `FailedPrecondition` when
        it is not running.
        """
        department = self._running.pop(name, None)
        if department is None:
            raise FailedPrecondition(f"department {name!r} is not running")
        return self._terminate([department])[name]

    def stop(self) -> dict[str, int]:
        """Stop every department this world started; return their exit statuses."""
        departments = list(self._running.values())
        self._running.clear()
        return self._terminate(departments)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, names: list[str]) -> None:
        started = [self._spawn(name) for name in names]
        try:
            self._await_ready(started)
        except BaseException:
            self._terminate(started)
            raise
        for department in started:
            self._running[department.name] = department

    def _spawn(self, name: str) -> _Department:
        folder = self.data_dir / "departments"
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "exchange.demo.departments",
            name,
            "--data-dir",
            str(folder / name),
            "--seed",
            str(self.seed),
            "--residents",
            str(self.residents),
            "--companies",
            str(self.companies),
            "--exit-with-parent",
        ]
        if name in self.change_intervals:
            command += ["--change-interval", str(self.change_intervals[name])]
        previous_port = self._ready.get(name, {}).get("port")
        if previous_port:
            command += ["--port", str(previous_port)]
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), environment.get("PYTHONPATH", "")) if p
        )
        if name == "realestate":
            environment[REALESTATE_TOKEN_ENV] = self._token
        with log_path.open("a", encoding="utf-8") as log:
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                encoding="utf-8",
                env=environment,
                start_new_session=True,
            )
        return _Department(name, process, log_path)

    def _await_ready(self, departments: list[_Department]) -> None:
        expires = time.monotonic() + self.startup_timeout
        waiting = {d.name: d for d in departments}
        with selectors.DefaultSelector() as selector:
            for department in departments:
                assert department.process.stdout is not None
                selector.register(department.process.stdout, selectors.EVENT_READ, department)
            while waiting:
                remaining = expires - time.monotonic()
                if remaining <= 0:
                    name = sorted(waiting)[0]
                    raise self._failure(
                        waiting[name], f"no READY within {self.startup_timeout:.0f}s"
                    )
                for key, _ in selector.select(timeout=min(remaining, 0.5)):
                    answered: _Department = key.data
                    stream = answered.process.stdout
                    assert stream is not None
                    line = stream.readline()
                    selector.unregister(stream)
                    if not line.startswith("READY "):
                        raise self._failure(answered, f"said {line.strip()[:200]!r}")
                    self._ready[answered.name] = json.loads(line.removeprefix("READY "))
                    del waiting[answered.name]

    def _failure(self, department: _Department, what: str) -> DepartmentStartError:
        try:
            # A department that closed its stdout is on its way out: report how it ended.
            status: int | None = department.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            status = None
        exited = f"exited with status {status}" if status is not None else "still running"
        try:
            tail = department.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            tail = ""
        last = " | ".join(tail.strip().splitlines()[-3:]) or "(nothing logged)"
        return DepartmentStartError(
            f"department {department.name!r} did not start: {what}; {exited}; "
            f"log {department.log_path}: {last}"
        )

    def _terminate(self, departments: list[_Department]) -> dict[str, int]:
        for department in departments:
            if department.process.poll() is None:
                department.process.send_signal(signal.SIGTERM)
        expires = time.monotonic() + self.stop_timeout
        statuses: dict[str, int] = {}
        for department in departments:
            process = department.process
            try:
                process.wait(timeout=max(0.0, expires - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
            statuses[department.name] = process.returncode
        return statuses

    # --- the hub's view ---------------------------------------------------------------

    def settings(self, **overrides: Any) -> Settings:
        """Hub settings for this world: its record types and four adapters, on the
        embedded default store in `data_dir`.

        `overrides` are dotted settings (``**{"database.url": ...}``) that win over
        everything. Raises `FailedPrecondition` before `start()` and `ConfigError` for a
        bad override.
        """
        defaults: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "record_types": catalogue_record_types(),
            "adapters": self.adapter_settings(),
        }
        return load_settings(None, **{**defaults, **overrides})

    def adapter_settings(self) -> list[dict[str, Any]]:
        """The four adapters as configuration declares them (``[[adapters]]`` tables).

        Raises `FailedPrecondition` before `start()`.
        """
        population = {"population.resident": ["ID_CARD"]}
        business = {"market.business_license": ["USCC", "ORG_CODE", "ID_CARD"]}
        realestate = {"realestate.title": ["REAL_ESTATE_CERT", "ID_CARD", "REAL_ESTATE_UNIT"]}
        social_security = {"social_security.enrolment": ["ID_CARD"]}
        return [
            {
                **self._declared("population", "grpc", population, self._population_options()),
                "department_keys": [self.ready("population")["department_key"]],
            },
            self._declared("business", "sql", business, self._business_options()),
            self._declared("realestate", "http", realestate, self._realestate_options()),
            self._declared(
                "social-security", "file", social_security, self._social_security_options()
            ),
        ]

    def _declared(
        self, name: str, kind: str, serves: dict[str, list[str]], options: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "id": ADAPTER_IDS[name],
            "kind": kind,
            "department": _DEPARTMENT_NAMES[name][0],
            "department_uscc": department_uscc(name),
            "timeout_seconds": _ADAPTER_TIMEOUT,
            "circuit_cooldown_seconds": CIRCUIT_COOLDOWN,
            "serves": [
                {"record_type": record_type, "key_kinds": kinds}
                for record_type, kinds in serves.items()
            ],
            "options": options,
        }

    def _population_options(self) -> dict[str, Any]:
        return {"target": self.ready("population")["target"]}

    def _business_options(self) -> dict[str, Any]:
        ready = self.ready("business")
        return {
            "url": ready["url"],
            "table": ready["table"],
            "max_rows": 100,
            "changes": {"cursor_columns": ["last_modified", "id"]},
            "mappings": [
                {
                    "record_type": "market.business_license",
                    "key_kind": "USCC",
                    "key_field": "tyshxydm",
                    "id_field": "id",
                    "related_key_fields": {"ORG_CODE": "zzjgdm", "ID_CARD": "fddbr_zjhm"},
                    "updated_at_field": "last_modified",
                    "field_map": {
                        "name": "qymc",
                        "company_type": "qylx",
                        "legal_representative": "fddbr",
                        "registered_capital_cny": "zczb",
                        "established": "clrq",
                        "status": "djzt",
                        "address": "zs",
                        "business_scope": "jyfw",
                        "registration_authority": "djjg",
                        "organization_code": "zzjgdm",
                    },
                    "field_types": {"established": "date", "registered_capital_cny": "integer"},
                }
            ],
        }

    def _realestate_options(self) -> dict[str, Any]:
        ready = self.ready("realestate")
        token = ready.get("token") or self._token
        return {
            "base_url": ready["base_url"],
            "records_path": "data.records",
            "headers": {"Accept": "application/json"},
            "auth_header": "Authorization",
            "auth_token": f"Bearer {token}",
            "fetch": {
                "method": "GET",
                "path": "/api/v1/titles",
                "params": {"keyType": "{key_kind}", "keyValue": "{key}"},
            },
            "changes": {
                "path": "/api/v1/titles/changes",
                "cursor_param": "cursor",
                "page_size_param": "size",
                "next_cursor_path": "data.nextCursor",
                "has_more_path": "data.hasMore",
            },
            "mappings": [
                {
                    "record_type": "realestate.title",
                    "key_kind": "REAL_ESTATE_CERT",
                    "key_field": "certNo",
                    "id_field": "titleId",
                    "related_key_fields": {"ID_CARD": "owner.idNo", "REAL_ESTATE_UNIT": "unitNo"},
                    "updated_at_field": "updateTime",
                    "field_map": {
                        "owner": "owner.name",
                        "co_ownership": "coOwnership",
                        "location": "location",
                        "unit_number": "unitNo",
                        "area_m2": "area",
                        "usage": "usage",
                        "right_type": "rightType",
                        "right_nature": "rightNature",
                        "registered_on": "registerDate",
                    },
                    "field_types": {"registered_on": "date"},
                }
            ],
        }

    def _social_security_options(self) -> dict[str, Any]:
        ready = self.ready("social-security")
        return {
            "folder": ready["folder"],
            "pattern": ready["pattern"],
            "format": "csv",
            "encoding": "utf-8",
            "mappings": [
                {
                    "record_type": "social_security.enrolment",
                    "key_kind": "ID_CARD",
                    "key_field": "证件号码",
                    "id_field": "参保编号",
                    "updated_at_field": "变更时间",
                    "field_map": {
                        "insurance": "险种",
                        "status": "参保状态",
                        "since": "参保日期",
                        "employer": "单位名称",
                        "employer_uscc": "单位统一社会信用代码",
                        "contribution_base_cny": "缴费基数",
                    },
                    "field_types": {"since": "date", "contribution_base_cny": "integer"},
                }
            ],
        }
