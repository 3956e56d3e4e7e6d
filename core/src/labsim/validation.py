"""Validating an experiment against the composed schema, and filling defaults.

Every problem of a file is reported at once, each with the file position, the
JSON path, what was expected and — for an unknown component name — what is
available and the nearest match. Keys the user did not write get the defaults
documented in the schemas.
"""

from __future__ import annotations

import copy

from jsonschema import Draft202012Validator, ValidationError, validators

from labsim.config import Experiment, format_path
from labsim.errors import ConfigError, Problem, UnknownNameError, nearest
from labsim.registry import Registry
from labsim.kinds import KINDS_TABLE
from labsim.schema import compose_experiment_schema

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def _shown(value) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else _TYPE_NAMES[_json_type(value)]
    return text if len(text) <= 60 else text[:57] + "..."


def _expected_types(types) -> str:
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_NAMES.get(t, t) for t in types)


def _messages(error, registry: Registry) -> list[tuple[tuple, str]]:
    """(path, message) pairs for one jsonschema error."""
    path = tuple(error.absolute_path)
    v, value, schema = error.validator, error.instance, error.schema
    if v == "required":
        missing = [k for k in error.validator_value if k not in (value or {})]
        return [((*path, k), "missing required key") for k in missing]
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        out = []
        for key in sorted(set(value) - set(allowed)):
            message = f"unknown key {key!r}; allowed: {', '.join(allowed) or '(none)'}"
            guess = nearest(key, allowed)
            if guess:
                message += f". Did you mean {guess!r}?"
            out.append(((*path, key), message))
        return out
    if v == "pattern" and "x-labsim-kind" in schema:
        kind = schema["x-labsim-kind"]
        err = UnknownNameError(kind, str(value), registry.names(kind), registry.loaded.failed)
        return [(path, err.message())]
    if v == "type":
        return [(path, f"expected {_expected_types(error.validator_value)}, got {_shown(value)}")]
    if v == "enum":
        allowed = ", ".join(repr(x) for x in error.validator_value)
        return [(path, f"must be one of {allowed}; got {_shown(value)}")]
    if v == "const":
        return [(path, f"must be {error.validator_value!r}; got {_shown(value)}")]
    bounds = {"minimum": "≥", "maximum": "≤", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if v in bounds:
        return [(path, f"must be {bounds[v]} {error.validator_value}; got {_shown(value)}")]
    if v == "minItems":
        n = error.validator_value
        return [(path, f"must have at least {n} item{'s' if n != 1 else ''}")]
    if v == "maxItems":
        return [(path, f"must have at most {error.validator_value} items; got {len(value)}")]
    if v == "minLength":
        return [
            (
                path,
                "must not be empty"
                if error.validator_value == 1
                else f"must be at least {error.validator_value} characters",
            )
        ]
    if v in ("anyOf", "oneOf"):
        return _alternatives(error, path, registry)
    return [(path, error.message)]


def _keys(required: list) -> str:
    return " and ".join(required)


def _alternatives(error, path: tuple, registry: Registry) -> list[tuple[tuple, str]]:
    """A readable message for a failed oneOf/anyOf."""
    options = error.validator_value
    if all(isinstance(o, dict) and set(o) == {"required"} for o in options):
        choices = " | ".join(_keys(o["required"]) for o in options)
        given = [
            _keys(o["required"])
            for o in options
            if all(k in (error.instance or {}) for k in o["required"])
        ]
        if len(given) > 1:
            return [(path, f"give only one of: {choices} (found {', '.join(given)})")]
        return [(path, f"needs one of: {choices}")]
    # a field that is either a name or an object: report the branch of the value's type
    wanted = _json_type(error.instance)
    for sub in error.context or ():
        if sub.validator != "type":
            branch = options[sub.schema_path[0]] if sub.schema_path else {}
            if branch.get("type") in (wanted, None):
                return _messages(sub, registry)
    if error.context:
        return [
            (
                path,
                "does not match any allowed form: "
                + "; ".join(sorted({e.message for e in error.context})),
            )
        ]
    return [(path, error.message)]


def _blocks_at(data, path: tuple[str, ...]):
    """The values at *path* in *data* (``*``: each item of a list)."""
    if not path:
        yield data
        return
    key, rest = path[0], path[1:]
    if key == "*":
        for item in data if isinstance(data, list) else ():
            yield from _blocks_at(item, rest)
    elif isinstance(data, dict) and key in data:
        yield from _blocks_at(data[key], rest)


def _prefill_selectors(data: dict, registry: Registry) -> None:
    """Put each kind's default component name in the blocks that name none, so the
    matching branch of the schema applies (the kinds table says where blocks sit)."""
    for kind in KINDS_TABLE:
        default = registry.default(kind.plural)
        if not default:
            continue
        for place in kind.places:
            if place.form == "block":
                for block in _blocks_at(data, place.path):
                    if isinstance(block, dict):
                        block.setdefault(kind.selector, default)


def _semantic_problems(exp: Experiment, data: dict) -> list[Problem]:
    """Checks a schema cannot express: unique names, files that must exist."""
    problems = []
    seen: dict[str, int] = {}
    for i, fw in enumerate(data.get("frameworks_to_test") or []):
        if isinstance(fw, dict) and isinstance(fw.get("name"), str):
            if fw["name"] in seen:
                problems.append(
                    exp.problem(
                        ("frameworks_to_test", i, "name"),
                        f"duplicate framework name {fw['name']!r} "
                        f"(also frameworks_to_test[{seen[fw['name']]}].name); "
                        "names must be unique",
                    )
                )
            seen.setdefault(fw["name"], i)
    devices = (data.get("hardware_profile") or {}).get("compute_devices") or []
    ids: set[str] = set()
    for i, dev in enumerate(devices):
        if isinstance(dev, dict) and isinstance(dev.get("device_id"), str):
            if dev["device_id"] in ids:
                problems.append(
                    exp.problem(
                        ("hardware_profile", "compute_devices", i, "device_id"),
                        f"duplicate device_id {dev['device_id']!r}",
                    )
                )
            ids.add(dev["device_id"])
    return problems


def _extend_with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_DefaultFiller = _extend_with_defaults(Draft202012Validator)


def _checking_validator(registry: Registry):
    """Draft 2020-12 plus ``x-labsim-check: KIND``: the component's own ``config_problems``."""

    def check(validator, kind, instance, schema):
        if not (
            isinstance(instance, dict)
            and isinstance(instance.get("type"), str)
            and registry.has(kind, instance["type"])
        ):
            return
        component = registry.get(kind, instance["type"])
        problems = getattr(component, "config_problems", None)
        if problems is None:
            return
        try:
            messages = problems(instance)
        except (KeyError, TypeError, ValueError):
            return  # the schema reports the malformed block
        for message in messages:
            yield ValidationError(message, validator="x-labsim-check")

    return validators.extend(Draft202012Validator, {"x-labsim-check": check})


def validate(exp: Experiment, registry: Registry, schema: dict | None = None) -> dict:
    """Check *exp* and return its data with defaults filled in.

    :raises ConfigError: listing every problem found.
    """
    schema = schema or compose_experiment_schema(registry)
    data = copy.deepcopy(exp.data)
    _prefill_selectors(data, registry)
    problems: list[Problem] = []
    seen = set()
    errors = sorted(
        _checking_validator(registry)(schema).iter_errors(data),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    for error in errors:
        for path, message in _messages(error, registry):
            key = (path, message)
            if key not in seen:
                seen.add(key)
                problems.append(exp.problem(path, message))
    problems += _semantic_problems(exp, data)
    if problems:
        problems.sort(key=lambda p: (p.line if p.line is not None else 10**9, p.path))
        raise ConfigError(problems)
    _DefaultFiller(schema).validate(data)
    return data


def check_block(
    schema: dict,
    value,
    path: tuple,
    exp: Experiment | None = None,
    registry: Registry | None = None,
) -> list[Problem]:
    """Problems of one component block against *schema* (for plugins checking sub-blocks)."""
    out = []
    for error in Draft202012Validator(schema).iter_errors(value):
        for sub_path, message in _messages(error, registry):
            full = (*path, *sub_path)
            out.append(exp.problem(full, message) if exp else Problem(format_path(full), message))
    return out
