"""The registry: every component the plugins registered, found by kind and name.

Each ``register_<kind>`` hook implementation is called on its own, so every
entry knows the plugin and distribution that registered it. Lookups are
case-insensitive and honour ``aliases``. A name registered twice is recorded
as a conflict, and looking it up is an error naming both providers; an
unknown name is an error listing what exists and the nearest match.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


from labsim.log import get_logger
from labsim.components import describe
from labsim.errors import PluginError, UnknownNameError, kind_noun
from labsim.plugins import LoadedPlugins, PluginInfo, failure_text, load_plugins

log = get_logger("labsim.registry")

from labsim.kinds import KINDS  # noqa: E402  (re-exported: the kinds, in table order)


@dataclass(frozen=True)
class Entry:
    """One registered component and where it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    distribution: str
    version: str

    @property
    def description(self) -> str:
        return describe(self.obj)

    @property
    def provider(self) -> str:
        return f"{self.distribution} {self.version}".strip()


class Registry:
    """Registered components by kind, with lookup by name or alias."""

    def __init__(self, loaded: LoadedPlugins):
        self.loaded = loaded
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._keys: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self._clashes: dict[tuple[str, str], list[Entry]] = {}
        for kind in KINDS:
            self._collect(kind)
        self._bind()

    # -- building ------------------------------------------------------------------------

    def _collect(self, kind: str) -> None:
        hook = getattr(self.loaded.pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():  # registration order
            info = self.loaded.info.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "", "")

            def register(obj, _info=info, _kind=kind):
                self._add(_kind, obj, _info)

            try:
                impl.function(register=register)
            except PluginError as ex:
                self._fail(info, str(ex))
            except (Exception, SystemExit) as ex:
                self._fail(info, f"register_{kind}: {failure_text(ex)}")

    def _bind(self) -> None:
        """Give each component that asks for it (a ``bind(registry)`` method) this registry,
        once every plugin has registered: a component that works with others of its kind
        (a collective with the algorithms registered beside it) finds them here, never in a
        process-wide table."""
        for kind in KINDS:
            for entry in self._entries[kind].values():
                bind = getattr(entry.obj, "bind", None)
                if callable(bind) and not isinstance(entry.obj, type):
                    try:
                        bind(self)
                    except Exception as ex:
                        self._fail(self.loaded.info.get(entry.plugin) or PluginInfo(entry.plugin, "", ""),
                                   f"{kind[:-1]} {entry.name!r}: bind raised {type(ex).__name__}: {ex}")

    def _fail(self, info: PluginInfo, error: str) -> None:
        self.loaded.failed[info.name] = f"{info.distribution}: {error}"
        self.loaded.failed_info[info.name] = info
        log.warning("plugin_register_failed", plugin=info.name, error=error)

    def _add(self, kind: str, obj: Any, info: PluginInfo) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"registered {kind[:-1]} {obj!r} has no 'name' attribute")
        entry = Entry(kind, name, obj, info.name, info.distribution, info.version)
        keys = self._keys[kind]
        for key in {name.casefold(), *(a.casefold() for a in getattr(obj, "aliases", ()) or ())}:
            owner = keys.get(key)
            if owner is None:
                keys[key] = name
            elif self._entries[kind][owner].obj is not obj:
                self._clashes.setdefault((kind, key), [self._entries[kind][owner]]).append(entry)
        self._entries[kind].setdefault(name, entry)

    # -- lookups -------------------------------------------------------------------------

    def entry(self, kind: str, name: str) -> Entry:
        """The entry registered under *name* (or an alias) for *kind*."""
        self._check_kind(kind)
        key = str(name).casefold()
        if (kind, key) in self._clashes:
            raise PluginError(self._clash_message(kind, key))
        canonical = self._keys[kind].get(key)
        if canonical is None:
            raise UnknownNameError(kind, str(name), self.names(kind), self.loaded.failed)
        return self._entries[kind][canonical]

    def get(self, kind: str, name: str) -> Any:
        """The component registered under *name* for *kind*."""
        return self.entry(kind, name).obj

    def default(self, kind: str) -> str | None:
        """The name of *kind*'s default component (the one with ``is_default``), or None.

        When several components claim it, the first by name wins and
        ``labsim plugins --check`` reports the clash.
        """
        claims = [e.name for e in self.entries(kind) if getattr(e.obj, "is_default", False) is True]
        return claims[0] if claims else None

    def default_clashes(self) -> list[str]:
        """One message per kind whose default is claimed by several components."""
        out = []
        for kind in KINDS:
            claims = [e for e in self.entries(kind) if getattr(e.obj, "is_default", False) is True]
            if len(claims) > 1:
                out.append(f"{len(claims)} {kind} claim to be the default: "
                           + ", ".join(f"{e.name!r} ({e.provider or e.plugin})" for e in claims))
        return out

    def has(self, kind: str, name: str) -> bool:
        return str(name).casefold() in self._keys[kind]

    def names(self, kind: str) -> list[str]:
        """Canonical names registered for *kind*, sorted."""
        self._check_kind(kind)
        return sorted(self._entries[kind], key=str.lower)

    def spellings(self, kind: str, name: str) -> list[str]:
        """Every accepted spelling (name and aliases) of the component *name*.

        A name two plugins registered is still listed (it is an error only where it is used).
        """
        self._check_kind(kind)
        canonical = self._keys[kind].get(str(name).casefold())
        if canonical is None:
            raise UnknownNameError(kind, str(name), self.names(kind), self.loaded.failed)
        obj = self._entries[kind][canonical].obj
        return [obj.name, *[a for a in getattr(obj, "aliases", ()) or () if a != obj.name]]

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][name] for name in self.names(kind)]

    @property
    def conflicts(self) -> list[str]:
        """Every clash: entry-point names claimed twice and components registered twice."""
        messages = list(self.loaded.conflicts)
        messages += [self._clash_message(kind, key) for kind, key in sorted(self._clashes)]
        return messages

    def _clash_message(self, kind: str, key: str) -> str:
        providers = " and ".join(
            dict.fromkeys(e.provider or e.plugin for e in self._clashes[(kind, key)])
        )
        return (
            f"{kind_noun(kind)} {key!r} is registered by both {providers}. "
            "Uninstall one, or set LABSIM_DISABLE_PLUGINS=<distribution>."
        )

    def clashing(self, kind: str) -> set[str]:
        """The names (casefolded, and as the providers spell them) registered more than once."""
        out = set()
        for (k, key), entries in self._clashes.items():
            if k == kind:
                out.add(key)
                out.update(e.name for e in entries)
        return out

    # -- component schemas ------------------------------------------------------------------

    def schema_problems(self) -> dict[tuple[str, str], str]:
        """``{(kind, name): what is wrong}`` for each ``config_schema`` that is not a valid JSON
        Schema (checked with jsonschema's ``check_schema``; slow, so only on demand)."""
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        out = {}
        checked: dict[int, str | None] = {}
        for kind in KINDS:
            for entry in self.entries(kind):
                schema = getattr(entry.obj, "config_schema", None)
                if schema is None:
                    continue
                if id(schema) not in checked:
                    problem = None
                    if not isinstance(schema, dict):
                        problem = f"is a {type(schema).__name__}, not a JSON Schema object"
                    else:
                        try:
                            Draft202012Validator.check_schema(schema)
                        except SchemaError as ex:
                            where = "/".join(str(p) for p in ex.absolute_path) or "(top)"
                            problem = f"at {where}: {ex.message}"
                        except Exception as ex:  # noqa: BLE001 - e.g. an unhashable oddity
                            problem = f"{type(ex).__name__}: {ex}"
                    checked[id(schema)] = problem
                if checked[id(schema)]:
                    out[(kind, entry.name)] = checked[id(schema)]
        return out

    def discard_invalid_schemas(self) -> list[str]:
        """Remove every component whose ``config_schema`` is invalid, marking its plugin failed;
        returns a message per component removed."""
        messages = []
        for (kind, name), problem in sorted(self.schema_problems().items()):
            entry = self._entries[kind].pop(name)
            for key in [k for k, owner in self._keys[kind].items() if owner == name]:
                del self._keys[kind][key]
            message = f"{kind_noun(kind)} {name!r} has an invalid config_schema {problem}"
            info = self.loaded.info.get(entry.plugin) or PluginInfo(entry.plugin, "", "")
            self._fail(info, message)
            messages.append(f"{entry.plugin}: {message}")
        return messages

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise UnknownNameError("kinds", kind, KINDS)


@functools.cache
def get_registry() -> Registry:
    """The process-wide registry of the installed plugins (loaded once)."""
    return Registry(load_plugins())


def reset_registry() -> None:
    """Forget the loaded plugins (tests, or after installing a plugin)."""
    get_registry.cache_clear()
