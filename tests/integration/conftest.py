"""A real hub: an in-process grpc.aio server on a free loopback port, on a real database."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from adapters.base import Adapter
from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import Settings, load_settings

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"

StartHub = Callable[..., Awaitable[HubServer]]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The example configuration on the test's database."""
    return load_settings(EXAMPLE_CONFIG, data_dir=str(tmp_path), **{"database.url": database_url})


@pytest.fixture
async def start_hub(settings: Settings) -> AsyncIterator[StartHub]:
    """Start a hub server (optionally with given adapters); stopped after the test."""
    started: list[HubServer] = []

    async def start(adapters: list[Adapter] | None = None, *, http: bool = False) -> HubServer:
        server = HubServer(
            Hub.open(settings, adapters), "127.0.0.1:0", "127.0.0.1:0" if http else None
        )
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(grace=0.5)


@pytest.fixture
async def hub_channel(start_hub: StartHub) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a hub with the example configuration's (demo) adapters."""
    server = await start_hub()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


# --- a real headless browser (Debian's chromium) driven by Playwright -------------------
# Installed by the test setup when missing on a Debian machine where packages may be
# installed; otherwise the browser tests are skipped, saying so.

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# chromium, and a font with Chinese glyphs for readable screenshots.
BROWSER_PACKAGES = ["chromium", "fonts-wqy-zenhei"]


def _install_chromium() -> str | None:
    if shutil.which("chromium"):
        return shutil.which("chromium")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", *BROWSER_PACKAGES]
    for command in (["apt-get", "update", "-qq"], install):
        if subprocess.run(command, env=env, capture_output=True, check=False).returncode:
            return None
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = _install_chromium()
    if path is None:
        pytest.skip(
            "browser tests need Debian's chromium (apt-get install chromium), "
            "which could not be installed on this machine"
        )
    return path


@pytest.fixture
async def browser_page(chromium_path: str) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_FLAGS
        )
        page = await browser.new_page(viewport={"width": 900, "height": 1000})
        yield page
        await browser.close()
