"""Helpers for testing plugins without the installed entry points.

>>> from labsim.testing import make_registry
>>> import labsim_gpus.plugin
>>> registry = make_registry(labsim_gpus.plugin)          # doctest: +SKIP
>>> registry.get("devices", "h100").name                   # doctest: +SKIP
'H100-SXM'
"""

from __future__ import annotations

from labsim.plugins import load_plugins
from labsim.registry import Registry


def make_registry(*plugins, load_entrypoints: bool = False) -> Registry:
    """A registry of the kernel's built-ins plus the given plugin modules or objects."""
    return Registry(load_plugins(load_entrypoints=load_entrypoints, extra_modules=plugins))
