"""Running demo worlds for the demo tests: real department processes, stopped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from adapters.base import Adapter
from adapters.factory import build_adapter
from domain.records import Purpose
from exchange.demo.launcher import DemoWorld
from exchange.settings import Settings

BuildAdapters = Callable[[Settings], dict[str, Adapter]]


@pytest.fixture
def purpose() -> Purpose:
    return Purpose("NJ-TEST-0001", "演示世界测试 / demo world test")


@pytest.fixture(scope="module")
def running_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWorld]:
    """The default world, with fast live changes; shared by a module, never stopped in it."""
    demo = DemoWorld(
        tmp_path_factory.mktemp("demo"), business_change_interval=0.3, export_interval=0.3
    )
    with demo:
        yield demo


@pytest.fixture
def small_world(tmp_path: Path) -> Iterator[DemoWorld]:
    """A small world of the test's own, for stopping departments; stopped afterwards."""
    demo = DemoWorld(tmp_path / "demo", residents=300, companies=30)
    with demo:
        yield demo


@pytest.fixture
async def build_adapters() -> AsyncIterator[BuildAdapters]:
    """Build the hub's real adapters from settings; closed after the test."""
    built: list[Adapter] = []

    def build(settings: Settings) -> dict[str, Adapter]:
        adapters = {
            declared.id: build_adapter(declared, f"adapters[{position}]")
            for position, declared in enumerate(settings.adapters)
        }
        built.extend(adapters.values())
        return adapters

    yield build
    for adapter in built:
        await adapter.close()
