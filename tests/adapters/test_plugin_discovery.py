"""A third-party plug-in installed with pip is discovered through its entry point."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.base import AdapterSpec
from adapters.python import discover, load_plugin
from domain.errors import ConfigError
from domain.records import Purpose
from domain.subjects import KeyKind, parse_key

PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "assets" / "adapters" / "plugin_pkg"
PLUGIN_MODULE = "tongban_example_plugin"


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[Path]:
    """The example plug-in pip-installed into a folder put first on sys.path."""
    # Build from a copy: setuptools leaves build/ and *.egg-info beside the sources.
    source = shutil.copytree(PLUGIN_SOURCE, tmp_path / "plugin_pkg")
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-index", "--disable-pip-version-check",
            "--no-compile", "--target", str(target), str(source),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop(PLUGIN_MODULE, None)
        importlib.invalidate_caches()


def spec(entry_point: str) -> AdapterSpec:
    return AdapterSpec(
        adapter_id="county.registry",
        kind="python",
        department="某县民政局",
        serves={"county.resident": frozenset({KeyKind.ID_CARD})},
        options={"entry_point": entry_point, "greeting": "您好"},
    )


@pytest.mark.slow
async def test_an_installed_plugin_is_discovered_loaded_and_fetches(installed_plugin: Path) -> None:
    plugins = discover()
    assert plugins["example-registry"].value == "tongban_example_plugin:ExampleRegistry"
    assert {"demo-population", "demo-business"} <= set(plugins)

    adapter = load_plugin(spec("example-registry"), "adapters[5]")
    assert type(adapter).__name__ == "ExampleRegistry"
    subject = parse_key(KeyKind.ID_CARD, "11010519491231002X")
    result = await adapter.fetch(subject, ["county.resident"], Purpose("C-1", "低保审核"))
    [record] = result.records
    assert record.fields == {"name": "王伟", "village": "东坝村", "greeting": "您好"}
    assert record.source_record_id == "C-002X"


def test_without_the_plugin_the_entry_point_is_unknown() -> None:
    assert "example-registry" not in discover()
    with pytest.raises(ConfigError) as caught:
        load_plugin(spec("example-registry"), "adapters[5]")
    assert caught.value.setting == "adapters[5].options.entry_point"
    assert "no plug-in 'example-registry'" in caught.value.rule
