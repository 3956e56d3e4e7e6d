"""Finding and loading plugins.

Plugins are Python modules named by entry points in the group ``labsim``
(``gpus = "labsim_gpus.plugin"``). The kernel's own components are ordinary
plugins too (:data:`DEFAULT_PLUGINS`), registered by module name.

Environment variables:

``LABSIM_LOAD_PLUGINS``
    comma-separated entry-point or distribution names to load; set but empty
    loads no third-party plugin at all.
``LABSIM_DISABLE_PLUGINS``
    comma-separated entry-point or distribution names to skip.
``LABSIM_TRACE_PLUGINS``
    ``1`` prints every hook call to stderr (for plugin authors).

A plugin that fails to import is skipped and remembered in
:attr:`LoadedPlugins.failed`; everything else still works.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from labsim import hookspecs
from labsim.log import get_logger, settle

log = get_logger("labsim.plugins")

GROUP = "labsim"

DEFAULT_PLUGINS = (
    "labsim.default_plugins.distributions",
    "labsim.default_plugins.sinks",
    "labsim.default_plugins.sharing",
)


@dataclass
class PluginInfo:
    """Where a loaded plugin comes from."""

    name: str
    distribution: str
    version: str
    builtin: bool = False


@dataclass
class LoadedPlugins:
    """The plugin manager plus what loading found: sources, failures, clashes."""

    pm: pluggy.PluginManager
    info: dict[str, PluginInfo] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    failed_info: dict[str, PluginInfo] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)


def _names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def new_manager() -> pluggy.PluginManager:
    """A plugin manager that knows labsim's hook specifications."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("LABSIM_TRACE_PLUGINS"):
        _trace(pm)
    return pm


def load_plugins(load_entrypoints: bool = True, extra_modules=()) -> LoadedPlugins:
    """Build a plugin manager with the built-in plugins and the installed ones.

    :param load_entrypoints: also load third-party plugins from the entry points.
    :param extra_modules: further plugin modules (or objects) to register, for tests.
    """
    pm = new_manager()
    loaded = LoadedPlugins(pm)
    if load_entrypoints:
        _load_entrypoints(loaded)
        settle()   # a plugin that imported structlog itself logs as labsim is configured to
    version = _version("labsim")
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        loaded.info[module_name] = PluginInfo(module_name, "labsim", version, builtin=True)
    for module in extra_modules:
        plugin_name = getattr(module, "__name__", None) or repr(module)
        pm.register(module, name=plugin_name)
        loaded.info[plugin_name] = PluginInfo(plugin_name, "(test)", "", builtin=False)
    _drop_unknown_hooks(loaded)
    return loaded


def failure_text(ex: BaseException) -> str:
    """What went wrong, for a plugin that raised (or called ``sys.exit``) while loading."""
    if isinstance(ex, SystemExit):
        return f"called sys.exit({ex.code!r}) while loading"
    return f"{type(ex).__name__}: {ex}"


def _drop_unknown_hooks(loaded: LoadedPlugins) -> None:
    """Unregister each plugin implementing a hook labsim does not have (a typo, a newer API)."""
    for _ in range(len(loaded.info) + 1):
        try:
            loaded.pm.check_pending()
            return
        except pluggy.PluginValidationError as ex:
            name = loaded.pm.get_name(ex.plugin) or repr(ex.plugin)
            loaded.pm.unregister(ex.plugin)
            info = loaded.info.pop(name, PluginInfo(name, "", ""))
            loaded.failed[name] = f"{info.distribution}: {ex}"
            loaded.failed_info[name] = info
            log.warning("plugin_load_failed", plugin=name, error=str(ex))


def _load_entrypoints(loaded: LoadedPlugins) -> None:
    allow = _names("LABSIM_LOAD_PLUGINS")
    deny = _names("LABSIM_DISABLE_PLUGINS") or set()
    by_name = defaultdict(list)
    # each distribution's name and version read once, from one parse of its metadata file
    # (``Distribution.name`` and ``.version`` parse it at every access)
    known: dict[int, tuple[str, str]] = {}
    for ep in metadata.entry_points(group=GROUP):
        if ep.dist is None:
            dist, version = "(unknown)", ""
        else:
            dist, version = known.get(id(ep.dist)) or known.setdefault(
                id(ep.dist), _name_and_version(ep.dist))
        if {ep.name, dist} & deny:
            continue
        if allow is not None and not ({ep.name, dist} & allow):
            continue
        by_name[ep.name].append((ep, dist, version))
    for name, eps in sorted(by_name.items()):
        dists = sorted({dist for _, dist, _ in eps})
        if len(dists) > 1:
            loaded.conflicts.append(
                f"Plugin name {name!r} is claimed by {' and '.join(dists)}. "
                "Uninstall one, or set LABSIM_DISABLE_PLUGINS=<distribution>."
            )
        for ep, dist, version in eps:
            plugin_name = name if len(dists) == 1 else f"{name}@{dist}"
            info = PluginInfo(plugin_name, dist, version)
            try:
                module = ep.load()
                loaded.pm.register(module, name=plugin_name)
            except (Exception, SystemExit) as ex:  # a broken plugin must not break the others
                loaded.failed[plugin_name] = f"{dist}: {failure_text(ex)}"
                loaded.failed_info[plugin_name] = info
                log.warning(
                    "plugin_load_failed",
                    plugin=plugin_name,
                    distribution=dist,
                    error=failure_text(ex),
                )
                continue
            loaded.info[plugin_name] = info


def _name_and_version(dist: metadata.Distribution) -> tuple[str, str]:
    """*dist*'s ``Name`` and ``Version``, as ``dist.name`` and ``dist.version`` give them."""
    fields = dist.metadata
    return fields["Name"], fields["Version"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def _trace(pm: pluggy.PluginManager) -> None:
    def before(hook_name, hook_impls, kwargs):
        print(
            f"labsim hook {hook_name} -> {[impl.plugin_name for impl in hook_impls]}",
            file=sys.stderr,
        )

    def after(outcome, hook_name, hook_impls, kwargs):
        print(f"labsim hook {hook_name} done", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)
