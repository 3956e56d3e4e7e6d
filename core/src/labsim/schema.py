"""Composing the experiment and summary JSON Schemas from the installed plugins.

The kernel's schema (``labsim/schemas/experiment.base.json``) fixes the
sections of an experiment file. Each block that names a component — a
framework's ``config``, the ``workload``, an inline device, a topology, a
``*_dist_config`` — is checked against that component's ``config_schema``
through an ``if``/``then`` branch keyed on its ``type``. Names match
case-insensitively, so the schema spells them as character classes.

Plugin schemas refer to a distribution block as ``{"$ref": "#/$defs/distribution"}``.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources

from labsim.registry import Registry

DISTRIBUTION_REF = {"$ref": "#/$defs/distribution"}

#: where each component kind is selected in an experiment, and its default name
SELECTOR_DEFAULTS = {"workloads": "client_profiles", "devices": "GPU"}


@cache
def _base(name: str) -> dict:
    return json.loads(resources.files("labsim").joinpath("schemas", name).read_text("utf-8"))


def base_experiment_schema() -> dict:
    """The kernel's own experiment schema (no plugin knowledge)."""
    return copy.deepcopy(_base("experiment.base.json"))


def base_summary_schema() -> dict:
    """The kernel's own summary schema (no plugin knowledge)."""
    return copy.deepcopy(_base("summary.base.json"))


def ci_pattern(spellings) -> str:
    """A regular expression matching any of *spellings*, ignoring ASCII case."""

    def one(word: str) -> str:
        return "".join(
            f"[{c.lower()}{c.upper()}]" if c.isascii() and c.isalpha() else re.escape(c)
            for c in word
        )

    return "^(?:" + "|".join(one(s) for s in sorted(set(spellings), key=str.lower)) + ")$"


def name_field(registry: Registry, kind: str, description: str = "") -> dict:
    """The schema of a string naming a registered component of *kind*."""
    spellings = [s for n in registry.names(kind) for s in registry.spellings(kind, n)]
    field = {"type": "string", "x-labsim-kind": kind}
    if spellings:
        field["pattern"] = ci_pattern(spellings)
        field["examples"] = registry.names(kind)
    if description:
        field["description"] = description
    return field


def with_keys(schema: dict, keys: dict) -> dict:
    """*schema* plus the selector keys (``type``, ``device_id`` ...) it must also allow."""
    out = copy.deepcopy(schema) if schema else {"type": "object"}
    props = out.setdefault("properties", {})
    for key, value in keys.items():
        props.setdefault(key, value)
    return out


def branches(
    registry: Registry,
    kind: str,
    selector: str,
    keys: dict,
    target: str | None = None,
    default: str | None = None,
) -> list[dict]:
    """``if``/``then`` branches applying each component's ``config_schema``.

    :param selector: the key naming the component (``type``).
    :param target: the key whose value the component schema checks (``config``), or
        None when it checks the whole object.
    :param default: the component used when *selector* is absent.
    """
    out = []
    for name in registry.names(kind):
        if name in registry.clashing(kind):
            continue
        obj = registry.get(kind, name)
        schema = getattr(obj, "config_schema", None) or {"type": "object"}
        then = {"properties": {target: schema}} if target else with_keys(schema, keys)
        cond = {
            "properties": {selector: {"pattern": ci_pattern(registry.spellings(kind, name))}},
            "required": [selector],
        }
        out.append({"if": cond, "then": then})
        if default and name.casefold() == default.casefold():
            out.append({"if": {"not": {"required": [selector]}}, "then": then})
    return out


def compose_experiment_schema(registry: Registry) -> dict:
    """The kernel's experiment schema composed with every registered component's schema."""
    schema = base_experiment_schema()
    props = schema["properties"]
    defs = schema.setdefault("$defs", {})

    common = {
        "type": name_field(registry, "distributions", "A registered distribution."),
        "is_int": {
            "type": "boolean",
            "default": False,
            "description": "Round samples to integers.",
        },
        "min": {"type": "number", "description": "Clip samples below this."},
        "max": {"type": "number", "description": "Clip samples above this."},
    }
    defs["distribution"] = {
        "type": "object",
        "required": ["type"],
        "properties": copy.deepcopy(common),
        "allOf": branches(registry, "distributions", "type", common),
        "x-labsim-check": "distributions",
    }

    fw = props["frameworks_to_test"]["items"]
    fw["properties"]["type"] = name_field(
        registry, "frameworks", fw["properties"]["type"]["description"]
    )
    fw["allOf"] = branches(registry, "frameworks", "type", {}, target="config")

    wl = props["workload"]
    wl["properties"]["type"] = {
        **name_field(registry, "workloads"),
        "default": SELECTOR_DEFAULTS["workloads"],
    }
    wl["allOf"] = branches(
        registry,
        "workloads",
        "type",
        {"type": wl["properties"]["type"]},
        default=SELECTOR_DEFAULTS["workloads"],
    )

    hw = props["hardware_profile"]["properties"]
    hw["device"] = {**name_field(registry, "devices"), "description": hw["device"]["description"]}
    dev_items = hw["compute_devices"]["items"]
    dev_items["properties"]["device_type"] = {
        **name_field(registry, "devices"),
        "default": SELECTOR_DEFAULTS["devices"],
    }
    dev_items["allOf"] = branches(
        registry,
        "devices",
        "device_type",
        dev_items["properties"],
        default=SELECTOR_DEFAULTS["devices"],
    )
    topo_keys = {"type": name_field(registry, "topologies")}
    hw["topology"] = {
        "description": hw["topology"]["description"],
        "oneOf": [
            name_field(registry, "topologies"),
            {
                "type": "object",
                "required": ["type"],
                "properties": dict(topo_keys),
                "allOf": branches(registry, "topologies", "type", topo_keys),
            },
        ],
    }

    sinks = props["metrics_config"]["properties"]["sinks"]
    sinks["items"] = name_field(registry, "metric_sinks")
    return schema


def compose_summary_schema(registry: Registry) -> dict:
    """The summary schema, with each framework's own ``summary_schema`` as an alternative."""
    schema = base_summary_schema()
    alternatives = []
    seen = set()
    for name in registry.names("frameworks"):
        if name in registry.clashing("frameworks"):
            continue
        extra = getattr(registry.get("frameworks", name), "summary_schema", None)
        if extra:
            key = json.dumps(extra, sort_keys=True)
            if key not in seen:
                seen.add(key)
                alternatives.append(extra)
    if alternatives:
        schema["properties"]["frameworks"]["additionalProperties"] = (
            alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
        )
    return schema


def dumps(schema: dict) -> str:
    """The canonical text of a schema file (what ``labsim schema`` prints)."""
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
