"""`tongban serve --workers N`: N hub processes serving one port, each on its own core.

A Python process runs one event loop on one core. The supervisor migrates the store
once, then starts N worker processes (``spawn``: each a fresh interpreter); each loads
the same settings, opens its own `Hub` on the shared store and serves the same gRPC
(and HTTP) port with ``SO_REUSEPORT``, so the kernel spreads connections over them.
Nothing is shared in memory: whatever must happen once (a schedule's tick, a sync
job, the audit chain's next entry) is claimed through the store, as between hub nodes.

The supervisor forwards SIGTERM and SIGINT to the workers and waits for them. When a
worker ends on its own, the others are stopped too and the supervisor exits with the
worker's code: a half-started hub is not left serving.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Mapping
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from domain.errors import ConfigError, TongbanError
from exchange.logs import configure_logging
from exchange.settings import Settings, load_settings

__all__ = ["supervise"]

log = structlog.get_logger("tongban.supervisor")

_POLL_SECONDS = 0.2
_STOP_SECONDS = 60.0


def supervise(settings: Settings, config: Path | None, overrides: Mapping[str, Any]) -> int:
    """Run `settings.server.workers` workers until a signal or one of them ends.

    `config` and `overrides` are what `settings` was loaded from: each worker loads
    them again (settings are built per process). Returns the exit code.

    Raises:
        StoreError: the store cannot be reached or migrated.
    """
    from exchange.hub import open_store

    open_store(settings).dispose()  # migrate once, before the workers race to
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            _signal(worker, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(settings.server.workers):
            process = context.Process(
                target=_worker_main,
                args=(index, config, dict(overrides)),
                name=f"tongban-worker-{index}",
            )
            process.start()
            workers.append(process)
        log.info(
            "workers started",
            workers=[worker.pid for worker in workers],
            listen=settings.server.listen,
        )
        code = 0
        while not stopping:
            ended = next((worker for worker in workers if not worker.is_alive()), None)
            if ended is not None:
                code = ended.exitcode or 1
                log.error("a worker ended; stopping the others", worker=ended.pid, code=code)
                for worker in workers:
                    _signal(worker, signal.SIGTERM)
                break
            time.sleep(_POLL_SECONDS)
        deadline = time.monotonic() + max(_STOP_SECONDS, settings.server.shutdown_grace_seconds)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join()
        if stopping:
            code = max((worker.exitcode or 0 for worker in workers), default=0)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal(worker: BaseProcess, sig: signal.Signals) -> None:
    if worker.is_alive() and worker.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)


def _worker_main(index: int, config: Path | None, overrides: dict[str, Any]) -> None:
    """One worker: the hub on the shared port, until SIGTERM (the supervisor's)."""
    import asyncio

    from exchange.hub import Hub
    from exchange.server import serve_until_signalled

    # Ctrl-C reaches every process of the terminal's group: let the supervisor decide.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        settings = load_settings(config, **overrides)
        configure_logging(settings.logging.level, settings.logging.format)
        structlog.contextvars.bind_contextvars(worker_index=index)
        hub = Hub.open(settings)
        asyncio.run(serve_until_signalled(hub, settings.server.listen, reuse_port=True))
    except ConfigError as exc:
        text = exc.rule if exc.setting == "configuration" else exc.message
        print(f"tongban: worker {index}: configuration error: {text}", file=sys.stderr)
        sys.exit(2)
    except TongbanError as exc:
        print(f"tongban: worker {index}: {exc.message}", file=sys.stderr)
        sys.exit(1)
