"""Every hook is documented in docs/plugin_hooks.md with its exact signature, and tested."""

from __future__ import annotations

from pathlib import Path

import pytest
from labsim import hookspecs
from labsim.plugins import new_manager

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugin_hooks.md"
HOOKS = sorted(name for name in dir(new_manager().hook) if name.startswith("register_"))


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook):
    caller = getattr(new_manager().hook, hook)
    signature = f"## {hook}({', '.join(caller.spec.argnames)})"
    assert signature in DOCS.read_text(encoding="utf-8"), f"{signature} missing from {DOCS.name}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_spec_docstring(hook):
    assert getattr(hookspecs, hook).__doc__.strip()


def test_every_registration_hook_feeds_a_registry_kind():
    from labsim.registry import KINDS

    # two hooks extend commands rather than feed a kind: register_commands, and
    # register_report_sections (the sections of labsim report)
    assert {h.removeprefix("register_") for h in HOOKS} == {*KINDS, "commands", "report_sections"}
