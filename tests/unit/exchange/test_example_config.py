"""config/tongban.example.toml documents every setting, as the README says it does."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from exchange.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "tongban.example.toml"


def _settings_in(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, key) of every setting under `model`, sections and lists included."""
    found = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        found.append((prefix + key, key))
        candidates = [field.annotation]
        while candidates:
            candidate = candidates.pop()
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found += _settings_in(candidate, f"{prefix}{key}.")
            else:
                candidates += list(typing.get_args(candidate))
    return found


def test_every_setting_is_in_the_example_configuration() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [
        path
        for path, key in _settings_in(Settings)
        # As a key (commented out or not), a [section] or a [[list]] header.
        if not re.search(rf"(^|[\s{{,#]){re.escape(key)} =|\[{re.escape(key)}[\].]", text, re.M)
        and not re.search(rf"\.{re.escape(key)}\]", text)
    ]
    assert missing == []


def test_the_example_configuration_loads() -> None:
    assert load_settings(EXAMPLE).server.mode == "dev"
