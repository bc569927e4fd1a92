"""config/adapters.example.toml loads, and every adapter in it builds without connecting."""

from __future__ import annotations

from pathlib import Path

from adapters.factory import build_adapter
from exchange.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "adapters.example.toml"


async def test_every_example_adapter_builds(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLE, data_dir=str(tmp_path))
    assert sorted(a.kind for a in settings.adapters) == ["file", "grpc", "http", "python", "sql"]
    adapters = [build_adapter(a, f"adapters[{i}]") for i, a in enumerate(settings.adapters)]
    try:
        assert [a.adapter_id for a in adapters] == [a.id for a in settings.adapters]
        for adapter in adapters:
            assert adapter.spec.serves
            for record_type in adapter.spec.serves:
                assert record_type in settings.record_types
    finally:
        for adapter in adapters:
            await adapter.close()
