"""The `python` adapter kind: in-process plug-ins found through an entry point.

A plug-in package declares, in its own packaging metadata::

    [project.entry-points."tongban.adapters"]
    my-registry = "my_package.module:MyAdapter"

where `MyAdapter` subclasses `adapters.base.Adapter`. The hub's configuration names
the entry point in the adapter's ``options.entry_point``.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from adapters.base import Adapter, AdapterSpec
from domain.errors import ConfigError

ENTRY_POINT_GROUP = "tongban.adapters"


def discover() -> dict[str, EntryPoint]:
    """Every installed plug-in in the `tongban.adapters` group, by entry-point name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(spec: AdapterSpec, setting: str) -> Adapter:
    """Instantiate the plug-in named by ``spec.options['entry_point']``.

    Raises `ConfigError` naming `setting` when the entry point is missing, cannot be
    imported, or is not an `Adapter` subclass.
    """
    name = spec.options.get("entry_point")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{setting}.options.entry_point", "required for a python adapter")
    plugins = discover()
    if name not in plugins:
        known = ", ".join(sorted(plugins)) or "none installed"
        raise ConfigError(f"{setting}.options.entry_point", f"no plug-in {name!r} (known: {known})")
    try:
        factory = plugins[name].load()
    except Exception as exc:  # a plug-in's import error is the plug-in's, report it whole
        raise ConfigError(
            f"{setting}.options.entry_point", f"plug-in {name!r} failed to load: {exc}"
        ) from exc
    if not (isinstance(factory, type) and issubclass(factory, Adapter)):
        raise ConfigError(
            f"{setting}.options.entry_point", f"{name!r} is not an adapters.base.Adapter"
        )
    return factory(spec)
