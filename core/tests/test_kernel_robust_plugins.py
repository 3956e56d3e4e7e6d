"""Misbehaving plugins are named in one line and only the runs that use them fail."""

from __future__ import annotations

import types

import labsim
import pytest
from click.testing import CliRunner
from labsim import cli as cli_mod
from labsim import hookimpl, plugins
from labsim.errors import ConfigError, PluginError, UnknownNameError, kind_noun
from labsim.orchestrator import Orchestrator, load_experiment
from labsim.plugins import PluginInfo, load_plugins
from labsim.registry import Registry

import kernel_test_plugin
from conftest import BASIC


def _module(name, **hooks):
    module = types.SimpleNamespace(__name__=name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


def _registry(*modules):
    loaded = load_plugins(load_entrypoints=False, extra_modules=[kernel_test_plugin])
    for name, dist, module in modules:
        loaded.pm.register(module, name=name)
        loaded.info[name] = PluginInfo(name, dist, "0.1.0")
    return Registry(loaded)


class _OtherQueue(kernel_test_plugin.Queue):
    """A second framework that claims the name 'queue'."""


class _Plain(kernel_test_plugin.Queue):
    name = "plain"
    aliases = ()


def _frameworks(*classes):
    def register_frameworks(register):
        for cls in classes:
            register(cls)

    return register_frameworks


def test_a_name_clash_matters_only_where_the_name_is_used(tmp_path):
    registry = _registry(
        ("acme", "acme-labsim", _module("acme", register_frameworks=_frameworks(_OtherQueue, _Plain)))
    )
    path = tmp_path / "e.yaml"
    path.write_text(BASIC.replace("type: queue", "type: plain"))
    Orchestrator(load_experiment(path), registry).run(tmp_path / "out")  # 'queue' unused
    path.write_text(BASIC)
    with pytest.raises(PluginError, match="registered by both"):
        Orchestrator(load_experiment(path), registry).run(tmp_path / "out2")


def _exits(register):
    raise SystemExit(3)


def test_sys_exit_while_registering_is_isolated_and_named():
    registry = _registry(("exiter", "labsim-exiter", _module("exiter", register_devices=_exits)))
    assert "sys.exit(3)" in registry.loaded.failed["exiter"]
    assert registry.has("frameworks", "queue")


class _FakeDist:
    name, version = "labsim-exit-at-import", "1.0"
    metadata = {"Name": name, "Version": version}


class _ExitingEP:
    name, dist = "exiter", _FakeDist()

    def load(self):
        raise SystemExit("bye")


def test_sys_exit_at_import_is_isolated_and_named(monkeypatch):
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: [_ExitingEP()])
    loaded = load_plugins()
    assert loaded.failed == {"exiter": "labsim-exit-at-import: called sys.exit('bye') while loading"}


def test_a_hook_labsim_does_not_have_marks_the_plugin_failed_not_everything():
    loaded = load_plugins(
        load_entrypoints=False,
        extra_modules=[kernel_test_plugin, _module("typo", register_framewrks=lambda register: 0)],
    )
    assert "typo" in loaded.failed and "register_framewrks" in loaded.failed["typo"]
    assert Registry(loaded).has("frameworks", "queue")


class _BadSchema(kernel_test_plugin.Queue):
    name = "badschema"
    aliases = ()
    config_schema = {"type": "objekt", "properties": {"x": {"minimum": "five"}}}


def test_an_invalid_config_schema_is_skipped_with_a_named_error(tmp_path):
    registry = _registry(("acme", "acme-labsim", _module("acme", register_frameworks=_frameworks(_BadSchema))))
    path = tmp_path / "e.yaml"
    path.write_text(BASIC)
    Orchestrator(load_experiment(path), registry)  # a run not using it does not care
    path.write_text(BASIC.replace("type: queue", "type: badschema"))
    with pytest.raises(ConfigError, match="failed to load: acme: .*invalid config_schema"):
        Orchestrator(load_experiment(path), registry)


def test_plugins_check_flags_an_invalid_config_schema(monkeypatch):
    registry = _registry(("acme", "acme-labsim", _module("acme", register_frameworks=_frameworks(_BadSchema))))
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    result = CliRunner().invoke(cli_mod.cli, ["plugins", "--check"])
    assert result.exit_code == 1
    assert "framework 'badschema' has an invalid config_schema" in result.output


class _Crashing(kernel_test_plugin.Queue):
    name = "crashing"
    aliases = ()

    def summary(self):
        return {"served": 1 / 0}


def test_a_plugin_raising_in_a_run_is_named_in_one_line(tmp_path, monkeypatch):
    registry = _registry(
        ("crashy", "labsim-crashy", _module(__name__, register_frameworks=_frameworks(_Crashing)))
    )
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    monkeypatch.setattr("labsim.orchestrator.get_registry", lambda: registry)
    monkeypatch.setattr(cli_mod, "_plugin_packages", lambda: {__name__.split(".")[0]: ("crashy", "labsim-crashy 0.1.0")})
    path = tmp_path / "e.yaml"
    path.write_text(BASIC.replace("type: queue", "type: crashing"))
    result = CliRunner().invoke(cli_mod.cli, ["run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("Error: plugin 'crashy' (labsim-crashy 0.1.0) failed: ZeroDivisionError")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_topology_is_singular():
    assert kind_noun("topologies") == "topology"
    with pytest.raises(UnknownNameError, match="No topology named 'dgx-z100'"):
        _registry().get("topologies", "dgx-z100")


class _Quitter(kernel_test_plugin.Queue):
    name = "quitter"
    aliases = ()

    def start(self):
        raise SystemExit(3)


def test_a_plugin_calling_sys_exit_in_a_run_is_named(tmp_path, monkeypatch):
    registry = _registry(
        ("quitty", "labsim-quitty", _module(__name__, register_frameworks=_frameworks(_Quitter)))
    )
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    monkeypatch.setattr("labsim.orchestrator.get_registry", lambda: registry)
    monkeypatch.setattr(cli_mod, "_plugin_packages", lambda: {__name__.split(".")[0]: ("quitty", "labsim-quitty 0.1.0")})
    path = tmp_path / "e.yaml"
    path.write_text(BASIC.replace("type: queue", "type: quitter"))
    result = CliRunner().invoke(cli_mod.cli, ["run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "plugin 'quitty' (labsim-quitty 0.1.0) failed: called sys.exit(3)" in result.output
