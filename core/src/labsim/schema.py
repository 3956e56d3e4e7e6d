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

from labsim.kinds import KINDS_TABLE, Kind, Place, base_class
from labsim.registry import Registry

DISTRIBUTION_REF = {"$ref": "#/$defs/distribution"}


@cache
def _base(name: str) -> dict:
    return json.loads(resources.files("labsim").joinpath("schemas", name).read_text("utf-8"))


def base_experiment_schema() -> dict:
    """The kernel's own experiment schema (no plugin knowledge)."""
    return copy.deepcopy(_base("experiment.base.json"))


def base_summary_schema() -> dict:
    """The kernel's own summary schema (no plugin knowledge)."""
    return copy.deepcopy(_base("summary.base.json"))


#: each ASCII letter as the character class of its two cases (:func:`ci_pattern`)
_CASE_CLASSES = {ord(c): f"[{c.lower()}{c.upper()}]"
                 for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}
#: ASCII upper-case letters to lower case, nothing else (the case :func:`ci_pattern` ignores)
_ASCII_LOWER = {ord(c): ord(c.lower()) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
#: every pattern :func:`ci_pattern` made in this process → its spellings, ASCII lower-cased
_CI_SPELLINGS: dict[str, frozenset[str]] = {}


def ci_pattern(spellings) -> str:
    r"""A regular expression matching any of *spellings*, ignoring ASCII case.

    It is written for any JSON Schema validator (ECMA 262: no inline flags), so each letter is
    a character class; :func:`ci_match` answers for the patterns made here without compiling
    them.

    >>> ci_pattern(["vllm", "vLLM-V1"])
    '^(?:[vV][lL][lL][mM]|[vV][lL][lL][mM]\\-[vV]1)$'
    """
    words = sorted(set(spellings), key=lambda w: (w.lower(), w))  # (ties: not by set order)
    pattern = "^(?:" + "|".join(re.escape(w).translate(_CASE_CLASSES) for w in words) + ")$"
    _CI_SPELLINGS.setdefault(pattern, frozenset(w.translate(_ASCII_LOWER) for w in words))
    return pattern


def ci_match(pattern: str, text: str) -> bool | None:
    """Whether ``re.search(pattern, text)`` finds a match, for a *pattern* :func:`ci_pattern`
    made in this process (a set lookup: compiling one alternative per spelling, letter by
    letter, took more of a run's start-up than the rest of its validation); None for any
    other pattern. As Python's ``$``, it lets one line break end *text*.

    >>> ci_match(ci_pattern(["vllm"]), "VLLM"), ci_match(ci_pattern(["vllm"]), "vllm2")
    (True, False)
    >>> ci_match("^vllm$", "vllm") is None
    True
    """
    spellings = _CI_SPELLINGS.get(pattern)
    if spellings is None:
        return None
    key = text.translate(_ASCII_LOWER)
    return key in spellings or (key.endswith("\n") and key[:-1] in spellings)


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


def kind_definitions(registry: Registry, kind: Kind) -> dict:
    """``$defs`` entries of *kind*: ``<singular>_name`` (a string naming one of its
    components) and ``<singular>`` (a block checked by the component it names)."""
    base = base_class(kind)
    default = registry.default(kind.plural)
    name = name_field(registry, kind.plural, f"A registered {kind.singular.replace('_', ' ')}.")
    selector = {**name, **({"default": default} if default else {})}
    common = {kind.selector: selector, **copy.deepcopy(getattr(base, "block_properties", {}))}
    block: dict = {"type": "object", "properties": common}
    if not default:
        block["required"] = [kind.selector]
    alternatives = branches(registry, kind.plural, kind.selector, common,
                            target=kind.target or None, default=default)
    if alternatives:
        block["allOf"] = alternatives
    if getattr(base, "config_problems", None) is not None:
        block["x-labsim-check"] = kind.plural
    return {f"{kind.singular}_name": name, kind.singular: block}


def _schema_node(schema: dict, path: tuple[str, ...]) -> dict:
    """The sub-schema of *schema* describing the instance at *path* (``*``: list items)."""
    node = schema
    for key in path:
        node = node["items"] if key == "*" else node["properties"][key]
    return node


def _place(schema: dict, kind: Kind, place: Place) -> None:
    node = _schema_node(schema, place.path)
    described = {k: node[k] for k in ("description",) if k in node}
    name_ref = {"$ref": f"#/$defs/{kind.singular}_name"}
    block_ref = {"$ref": f"#/$defs/{kind.singular}"}
    if place.form == "name":
        node.clear()
        node.update({**name_ref, **described})
    elif place.form == "name_or_block":
        node.clear()
        node.update({**described, "oneOf": [name_ref, block_ref]})
    else:
        node.setdefault("allOf", []).insert(0, block_ref)
        if node.get("additionalProperties") is False:
            props = node.setdefault("properties", {})
            props.setdefault(kind.selector, True)
            if kind.target:
                props.setdefault(kind.target, True)


def compose_experiment_schema(registry: Registry) -> dict:
    """The kernel's experiment schema composed with every registered component's schema,
    from the table of kinds (:mod:`labsim.kinds`) alone."""
    schema = base_experiment_schema()
    defs = schema.setdefault("$defs", {})
    for kind in KINDS_TABLE:
        defs.update(kind_definitions(registry, kind))
        for place in kind.places:
            _place(schema, kind, place)
    for dotted, field_schema in plugin_fields(registry).items():
        *parents, key = dotted.split(".")
        _schema_node(schema, tuple(parents))["properties"].setdefault(key, copy.deepcopy(field_schema))
    return schema


def plugin_fields(registry: Registry) -> dict[str, dict]:
    """Keys the registered components add to the kernel's sections (``experiment_fields``),
    by dotted path; the first component (in kind and name order) declaring a path wins."""
    out: dict[str, dict] = {}
    for kind in KINDS_TABLE:
        for name in registry.names(kind.plural):
            if name in registry.clashing(kind.plural):
                continue
            fields = getattr(registry.get(kind.plural, name), "experiment_fields", None) or {}
            for dotted, field_schema in fields.items():
                out.setdefault(dotted, field_schema)
    return out


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
