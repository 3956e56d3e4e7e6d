"""The experiment's own model file (``model_characteristics_db_path``, seed 001's key).

The file adds to (and overrides) the registered models. It is read once per
run, relative to the experiment file's folder, and kept on the run context.
"""

from __future__ import annotations

from typing import Any

from labsim.errors import ConfigError

#: the experiment key this plugin owns (declared by :class:`labsim_llm.models.ModelSpec`)
FIELD = "model_characteristics_db_path"
FIELD_SCHEMA = {
    "type": "string",
    "description": "A JSON or YAML file of model characteristics that adds to (and overrides) "
    "the registered models.",
}


def load_model_db(exp, data: dict) -> dict[str, Any]:
    """The models of ``model_characteristics_db_path``, by id (a mapping or a ``models`` list).

    :raises ConfigError: the file is missing or is not a mapping of models (with its line).
    """
    from labsim import config as config_mod
    from labsim.validation import number_problems

    path = data.get(FIELD)
    if not path:
        return {}
    resolved = exp.resolve_path(path)
    if not resolved.is_file():
        raise ConfigError([exp.problem((FIELD,), f"file not found: {path} (relative paths are read "
                                                  "from the experiment file's folder)")])
    file_exp = config_mod.load(resolved, "model database")
    raw = file_exp.data
    if not raw:
        raise ConfigError([exp.problem((FIELD,), f"the model database {path} is empty")])
    numbers = number_problems(file_exp, raw)
    if numbers:
        raise ConfigError(numbers)
    if isinstance(raw.get("models"), list):
        entries = {}
        for i, item in enumerate(raw["models"]):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise ConfigError([file_exp.problem(("models", i, "id"), "each model needs a string id")])
            entries[item["id"]] = item
        return entries
    bad = [k for k, v in raw.items() if not isinstance(v, dict)]
    if bad:
        raise ConfigError([file_exp.problem(
            (bad[0],), "expected a mapping of model id to its characteristics (or a `models:` list)")])
    return {k: dict(v, id=v.get("id", k)) for k, v in raw.items()}


def model_db(context) -> dict[str, Any]:
    """The run's model file entries, read on first use and kept on *context*."""
    db = getattr(context, "model_db", None)
    if db is not None:
        return db
    exp = getattr(context, "experiment", None)
    db = load_model_db(exp, getattr(context, "config", None) or {}) if exp is not None else {}
    try:
        context.model_db = db
    except AttributeError:  # a read-only stand-in context
        pass
    return db
