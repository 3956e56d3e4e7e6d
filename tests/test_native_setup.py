"""How the plugins build their compiled twins: one piece of code, ``labsim.native_build``,
which each plugin's ``setup.py`` loads by path (labsim.native; docs/writing_plugins.md §7)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from labsim import native_build

ROOT = Path(__file__).resolve().parent.parent


def test_each_plugin_with_twins_builds_them_with_labsims_native_build():
    plugins = {p.parents[3].name for p in ROOT.glob("plugins/*/src/*/native/__init__.py")}
    assert {"llm", "gpus", "vllm", "trtllm"} <= plugins
    for name in plugins:
        setup = (ROOT / "plugins" / name / "setup.py").read_text()
        assert 'native_build.py"' in setup and '["native_extensions"](HERE)' in setup
        package = native_build.package_of(ROOT / "plugins" / name)
        assert native_build.native_settings(package)["MODULES"]


def test_a_group_s_copies_import_one_another_s_twins():
    modules = {"seq": "seq.py", "v1": "v1.py"}
    source = "from labsim_vllm.seq import Seq\nfrom labsim_vllm.config import X\n"
    assert native_build.as_twin_imports(source, "labsim_vllm", modules) == (
        "from labsim_vllm.native.seq import Seq\nfrom labsim_vllm.config import X\n")


def test_a_group_may_hold_its_own_copy_of_a_sibling_package_s_module():
    """``"shell": "labsim_llm:engine/replica.py"``: the group compiles labsim-llm's replica
    shell with its layers, and their imports of it become imports of that copy."""
    modules = {"shell": "labsim_llm:engine/replica.py", "state": "state.py"}
    assert native_build.split_module("labsim_vllm", modules["shell"]) == ("labsim_llm", "engine/replica.py")
    assert native_build.dotted_name("labsim_vllm", modules["shell"]) == "labsim_llm.engine.replica"
    assert native_build.dotted_name("labsim_vllm", modules["state"]) == "labsim_vllm.state"
    source = "from labsim_llm.engine.replica import ReplicaShell\nfrom labsim_llm.engine.kv_cache import BlockPool\n"
    assert native_build.as_twin_imports(source, "labsim_vllm", modules) == (
        "from labsim_vllm.native.shell import ReplicaShell\nfrom labsim_llm.engine.kv_cache import BlockPool\n")


def test_a_twin_records_the_sibling_modules_it_was_typed_against():
    plugin = ROOT / "plugins" / "vllm"
    roots = native_build.sibling_sources(plugin, ["labsim", "labsim_llm"])
    assert roots == [str(ROOT / "core" / "src"), str(ROOT / "plugins" / "llm" / "src")]
    source = ("from labsim import native\n"
              "if TYPE_CHECKING:\n    from labsim_llm.engine.kv_cache import BlockPool\n"
              "from labsim_vllm.seq import Seq\n")
    found = native_build.sibling_digests(source, ["labsim", "labsim_llm"], roots)
    kv_cache = ROOT / "plugins" / "llm" / "src" / "labsim_llm" / "engine" / "kv_cache.py"
    assert found == {"labsim": hashlib.sha256((ROOT / "core/src/labsim/__init__.py").read_bytes()).hexdigest(),
                     "labsim_llm.engine.kv_cache": hashlib.sha256(kv_cache.read_bytes()).hexdigest()}
    assert native_build.sibling_sources(plugin, ["labsim_no_such_package"]) is None
