"""Validating an experiment against the composed schema, and filling defaults.

Every problem of a file is reported at once, each with the file position, the
JSON path, what was expected and — for an unknown component name — what is
available and the nearest match. Keys the user did not write get the defaults
documented in the schemas.
"""

from __future__ import annotations

import copy
import math

from jsonschema import Draft202012Validator, ValidationError, validators

from labsim.log import get_logger
from labsim.config import Experiment, format_path
from labsim.errors import ConfigError, LabsimError, Problem, UnknownNameError, nearest
from labsim.registry import Registry
from labsim.kinds import KINDS_TABLE
from labsim.schema import ci_match, compose_experiment_schema

log = get_logger("labsim.validation")

#: integers must fit the 64-bit integers numpy and SQLite compute with
INT64_MAX = 2**63 - 1
#: the largest magnitude of a distribution's parameters, bounds and mean: tokens, seconds
#: and counts beyond this are a mistake, and as samples they would lose integer precision
DISTRIBUTION_BOUND = 1e12
#: a run expected to generate more requests than this is refused (it would take days)
MAX_EXPECTED_REQUESTS = 10**8
#: above this many expected requests a run warns that it will take a long time
WARN_EXPECTED_REQUESTS = 10**6

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
    if not isinstance(error.instance, dict) and all(
        isinstance(o, dict) and set(o) == {"required"} for o in options
    ):
        return []  # not a mapping at all: the type check says so
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
    frameworks = data.get("frameworks_to_test")
    for i, fw in enumerate(frameworks if isinstance(frameworks, list) else []):
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
    hardware = data.get("hardware_profile")
    devices = hardware.get("compute_devices") if isinstance(hardware, dict) else None
    ids: set[str] = set()
    for i, dev in enumerate(devices if isinstance(devices, list) else []):
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


def number_problems(exp: Experiment, data, path: tuple = ()) -> list[Problem]:
    """NaN and infinities anywhere in *data*, and integers beyond 64 bits, each located.

    No field of any plugin means anything with these values, and letting them through
    silently changes the answer (a NaN duration is never reached), so they are refused here,
    once for every schema.
    """
    out: list[Problem] = []
    stack = [(path, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*where, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*where, i), v) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(exp.problem(where, f"must be a finite number; got {value}"))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
            out.append(
                exp.problem(where, f"{value:.3g} is too large (integers must be below 2**63)")
            )
    return sorted(out, key=lambda p: p.path)


def distribution_problems(component, config: dict) -> list[str]:
    """Consistency of any distribution block: bounded numbers, min ≤ max, the mean inside them."""
    out = []
    for key, value in config.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if not math.isfinite(v) or abs(v) > DISTRIBUTION_BOUND:
                    out.append(
                        f"{key} {v:g} is out of range: a distribution's numbers must lie within "
                        f"±{DISTRIBUTION_BOUND:g}"
                    )
                    break
    if out:
        return out
    low, high = config.get("min"), config.get("max")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
        return [f"min ({low:g}) is above max ({high:g})"]
    if "path" in config:  # Empirical samples from a file: read when the run starts
        return out
    try:
        mean = float(component(config, None).mean())
    except Exception:  # noqa: BLE001 - a component whose mean needs more than its config
        return out
    if not math.isfinite(mean) or abs(mean) > DISTRIBUTION_BOUND:
        return [f"its mean ({mean:g}) is out of range (within ±{DISTRIBUTION_BOUND:g})"]
    if isinstance(low, (int, float)) and mean < low:
        out.append(f"its mean ({mean:g}) is below min ({low:g}): nearly every sample would be min")
    if isinstance(high, (int, float)) and mean > high:
        out.append(f"its mean ({mean:g}) is above max ({high:g}): nearly every sample would be max")
    return out


def _distribution_mean(registry: Registry):
    """``mean_of(block)``: the mean of a distribution block, or None when it cannot be known."""

    def mean_of(block) -> float | None:
        if not isinstance(block, dict) or not registry.has("distributions", block.get("type", "")):
            return None
        if "path" in block:
            return None
        try:
            return float(registry.get("distributions", block["type"])(block, None).mean())
        except Exception:  # noqa: BLE001 - unknown: no estimate
            return None

    return mean_of


def work_problems(exp: Experiment, data: dict, registry: Registry) -> list[Problem]:
    """Estimate the requests a run will generate, refusing the absurd and warning of the large.

    A workload component may define ``expected_requests(config, horizon_s, mean_of)``
    (a classmethod) returning the number of requests it expects to generate before
    *horizon_s* simulated seconds, or None when it cannot tell.
    """
    workload = data.get("workload")
    if not isinstance(workload, dict) or not registry.has("workloads", workload.get("type", "")):
        return []
    try:
        cls = registry.get("workloads", workload["type"])
    except LabsimError:
        return []
    estimate = getattr(cls, "expected_requests", None)
    if estimate is None:
        return []
    horizon = float(data["simulation"]["max_simulation_time"])
    try:
        expected = estimate(workload, horizon, _distribution_mean(registry))
    except Exception:  # noqa: BLE001 - no estimate rather than no run
        return []
    if expected is None or expected != expected:
        return []
    targets = sum(1 for f in data.get("frameworks_to_test", []) if f.get("is_target_for_workload"))
    total = expected * max(targets, 1)
    if total > MAX_EXPECTED_REQUESTS:
        return [
            exp.problem(
                ("workload",),
                f"asks for about {total:.3g} requests (its rates over its duration"
                + (f", for {targets} frameworks" if targets > 1 else "")
                + f"), more than the {MAX_EXPECTED_REQUESTS:.0e} labsim simulates in a day; "
                "lower the request rate, total_duration or simulation.max_simulation_time, "
                "or set num_requests",
            )
        ]
    if total > WARN_EXPECTED_REQUESTS:
        log.warning(
            "large_run",
            expected_requests=int(total),
            hint="this run will take a long time (roughly a minute per million requests or "
            "more); lower the rate or duration, or set num_requests, for a quick answer",
        )
    return []


def _extend_with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


#: Draft 2020-12's own ``pattern`` keyword (a regex search)
_REGEX_PATTERN = Draft202012Validator.VALIDATORS["pattern"]


def _pattern(validator, patrn, instance, schema):
    """Draft 2020-12's ``pattern``, answered by :func:`~labsim.schema.ci_match` for the
    case-insensitive name patterns the composed schema is full of (no regex compiled)."""
    if isinstance(instance, str):
        found = ci_match(patrn, instance)
        if found is not None:
            if not found:
                yield ValidationError(f"{instance!r} does not match {patrn!r}")
            return
    yield from _REGEX_PATTERN(validator, patrn, instance, schema)


#: Draft 2020-12 with name patterns matched by :func:`_pattern`
_Draft = validators.extend(Draft202012Validator, {"pattern": _pattern})

_DefaultFiller = _extend_with_defaults(_Draft)


def _checking_validator(registry: Registry):
    """Draft 2020-12 plus ``x-labsim-check: KIND``: the component's own ``config_problems``."""

    def check(validator, kind, instance, schema):
        if not (
            isinstance(instance, dict)
            and isinstance(instance.get("type"), str)
            and registry.has(kind, instance["type"])
        ):
            return
        try:
            component = registry.get(kind, instance["type"])
        except LabsimError:
            return  # a clash of names: reported where the component is built
        messages = []
        if kind == "distributions":
            messages += distribution_problems(component, instance)
        problems = getattr(component, "config_problems", None)
        if problems is not None and not messages:
            try:
                messages += list(problems(instance))
            except (KeyError, TypeError, ValueError, ArithmeticError):
                pass  # the schema reports the malformed block
        for message in messages:
            yield ValidationError(message, validator="x-labsim-check")

    return validators.extend(_Draft, {"x-labsim-check": check})


def validate(exp: Experiment, registry: Registry, schema: dict | None = None) -> dict:
    """Check *exp* and return its data with defaults filled in.

    A component whose ``config_schema`` is not a valid JSON Schema is found when it breaks
    validation, removed (its plugin marked failed) and the experiment checked again without it.

    :raises ConfigError: listing every problem found.
    """
    numbers = number_problems(exp, exp.data)
    if numbers:
        raise ConfigError(numbers)
    try:
        return _validate(exp, registry, schema or compose_experiment_schema(registry))
    except LabsimError:
        raise
    except Exception as ex:  # noqa: BLE001 - a plugin's broken schema
        if not registry.discard_invalid_schemas():
            raise
        log.warning("invalid_plugin_schema", error=f"{type(ex).__name__}: {ex}")
        return _validate(exp, registry, compose_experiment_schema(registry))


def _validate(exp: Experiment, registry: Registry, schema: dict) -> dict:
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
    # defaults can make a block invalid (an omitted `config: {}` lacks a required key)
    late = []
    for error in _DefaultFiller(schema).iter_errors(data):
        for path, message in _messages(error, registry):
            late.append(exp.problem(path, message))
    if late:
        raise ConfigError(sorted(set(late), key=lambda p: p.path))
    work = _warm_up_problems(exp, data) + work_problems(exp, data, registry)
    if work:
        raise ConfigError(work)
    return data


def _warm_up_problems(exp: Experiment, data: dict) -> list[Problem]:
    """A warm-up that covers the whole run would leave every request out of the statistics."""
    warm = data["metrics_config"].get("warm_up_duration_s", 0)
    end = data["simulation"]["max_simulation_time"]
    if warm and warm >= end:
        return [
            exp.problem(
                ("metrics_config", "warm_up_duration_s"),
                f"the warm-up ({warm:g} s) is not shorter than simulation.max_simulation_time "
                f"({end:g} s): every request would be left out of the statistics",
            )
        ]
    workload = data.get("workload")
    duration = workload.get("total_duration") if isinstance(workload, dict) else None
    if warm and isinstance(duration, (int, float)) and warm >= duration:
        log.warning(
            "warm_up_covers_workload",
            warm_up_duration_s=warm,
            total_duration=duration,
            hint="requests arriving in the warm-up are left out of the statistics",
        )
    return []


def check_block(
    schema: dict,
    value,
    path: tuple,
    exp: Experiment | None = None,
    registry: Registry | None = None,
) -> list[Problem]:
    """Problems of one component block against *schema* (for plugins checking sub-blocks)."""
    out = []
    for error in _Draft(schema).iter_errors(value):
        for sub_path, message in _messages(error, registry):
            full = (*path, *sub_path)
            out.append(exp.problem(full, message) if exp else Problem(format_path(full), message))
    return out
