"""The plugin loader and the registry: built-ins, lookups, clashes, broken and disabled plugins."""

from __future__ import annotations

import types

import labsim
import pytest
from labsim import hookimpl, plugins
from labsim.errors import PluginError, UnknownNameError
from labsim.plugins import PluginInfo, load_plugins
from labsim.registry import Registry


def test_builtins_are_registered_as_plugins(registry):
    assert registry.names("distributions") == [
        "Constant",
        "Empirical",
        "Exponential",
        "Gamma",
        "LogNormal",
        "Normal",
        "Poisson",
        "Uniform",
    ]
    assert {"csv", "summary_json"} <= set(registry.names("metric_sinks"))
    entry = registry.entry("distributions", "Gamma")
    assert entry.plugin == "labsim.default_plugins.distributions"
    assert entry.distribution == "labsim"


def test_lookup_is_case_insensitive_and_honours_aliases(registry):
    assert registry.get("frameworks", "QUEUE") is registry.get("frameworks", "fifo-queue")
    assert registry.get("distributions", "exponential").name == "Exponential"
    assert registry.get("distributions", "fixed").name == "Constant"


def test_unknown_name_lists_available_and_nearest(registry):
    with pytest.raises(UnknownNameError) as info:
        registry.get("distributions", "Gausian")
    message = str(info.value)
    assert message.startswith("No distribution named 'Gausian'. Available: Constant,")
    assert "Did you mean" not in message or "'Gamma'" in message
    with pytest.raises(UnknownNameError, match=r"Did you mean 'Uniform'\?"):
        registry.get("distributions", "uniformm")
    with pytest.raises(UnknownNameError, match="may not be installed"):
        registry.get("frameworks", "sglang")


def _plugin(kind, *objs):
    module = types.SimpleNamespace(__name__=f"fake_{id(objs)}")

    def register_all(register):
        for obj in objs:
            register(obj)

    setattr(module, f"register_{kind}", hookimpl(register_all))
    return module


def _registry_with(*plugins_with_dists):
    loaded = load_plugins(load_entrypoints=False)
    for name, dist, module in plugins_with_dists:
        loaded.pm.register(module, name=name)
        loaded.info[name] = PluginInfo(name, dist, "0.1.0")
    return Registry(loaded)


class _Dev(labsim.Device):
    def __init__(self, name):
        self.name = name


def test_name_registered_by_two_distributions_is_an_error_naming_both():
    registry = _registry_with(
        ("gpus", "labsim-gpus", _plugin("devices", _Dev("h100"), _Dev("h200"))),
        ("acme", "acme-labsim-gpus", _plugin("devices", _Dev("H100"))),
    )
    with pytest.raises(PluginError) as info:
        registry.get("devices", "h100")
    assert str(info.value) == (
        "device 'h100' is registered by both labsim-gpus 0.1.0 and acme-labsim-gpus 0.1.0. "
        "Uninstall one, or set LABSIM_DISABLE_PLUGINS=<distribution>."
    )
    assert registry.get("devices", "h200").name == "h200"  # an unrelated name still works
    assert len(registry.conflicts) == 1


def test_registration_without_a_name_marks_the_plugin_failed():
    registry = _registry_with(("bad", "labsim-bad", _plugin("devices", object())))
    assert "bad" in registry.loaded.failed
    assert "has no 'name'" in registry.loaded.failed["bad"]
    with pytest.raises(UnknownNameError, match="Plugins that failed to load: bad"):
        registry.get("devices", "x")


class _FakeDist:
    def __init__(self, name):
        self.name = name
        self.version = "1.0"
        self.metadata = {"Name": name, "Version": "1.0"}


class _FakeEP:
    def __init__(self, name, dist, target):
        self.name, self.dist, self._target = name, _FakeDist(dist), target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def _entry_points(monkeypatch, eps):
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: eps)


def test_broken_plugin_is_skipped_and_named(monkeypatch):
    good = _plugin("devices", _Dev("mygpu"))
    _entry_points(
        monkeypatch,
        [
            _FakeEP("broken", "labsim-broken", ModuleNotFoundError("No module named 'acme_sdk'")),
            _FakeEP("good", "labsim-good", good),
        ],
    )
    registry = Registry(load_plugins())
    assert registry.loaded.failed == {
        "broken": "labsim-broken: ModuleNotFoundError: No module named 'acme_sdk'"
    }
    assert registry.get("devices", "mygpu").name == "mygpu"


def test_disabled_plugin_is_not_loaded(monkeypatch):
    _entry_points(monkeypatch, [_FakeEP("good", "labsim-good", _plugin("devices", _Dev("mygpu")))])
    monkeypatch.setenv("LABSIM_DISABLE_PLUGINS", "labsim-good")
    assert not Registry(load_plugins()).has("devices", "mygpu")
    monkeypatch.setenv("LABSIM_DISABLE_PLUGINS", "good")
    assert not Registry(load_plugins()).has("devices", "mygpu")
    monkeypatch.delenv("LABSIM_DISABLE_PLUGINS")
    monkeypatch.setenv("LABSIM_LOAD_PLUGINS", "")
    assert not Registry(load_plugins()).has("devices", "mygpu")
    monkeypatch.setenv("LABSIM_LOAD_PLUGINS", "labsim-good")
    assert Registry(load_plugins()).has("devices", "mygpu")


def test_entry_point_name_claimed_by_two_distributions_is_a_conflict(monkeypatch):
    _entry_points(
        monkeypatch,
        [
            _FakeEP("gpus", "labsim-gpus", _plugin("devices", _Dev("a"))),
            _FakeEP("gpus", "acme-gpus", _plugin("devices", _Dev("b"))),
        ],
    )
    registry = Registry(load_plugins())
    assert registry.conflicts[0] == (
        "Plugin name 'gpus' is claimed by acme-gpus and labsim-gpus. "
        "Uninstall one, or set LABSIM_DISABLE_PLUGINS=<distribution>."
    )
