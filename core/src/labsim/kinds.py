"""The table of component kinds: what plugins can register and where it sits in a file.

Every kind of component a ``register_<kind>`` hook registers has one row here.
The registry collects components by these kinds, ``labsim list`` offers them,
and :func:`labsim.schema.compose_experiment_schema` builds the experiment
schema from this table alone: each kind's components are published under
``$defs/<singular>`` (one ``if``/``then`` branch per component, keyed on the
kind's selector), and each :class:`Place` of the kind in the experiment file
refers to that definition. A plugin's own ``config_schema`` may nest another
kind the same way, e.g. a cluster framework's ``scheduler:`` block::

    config_schema = {"type": "object",
                     "properties": {"scheduler": {"$ref": "#/$defs/scheduler"}}}

A kind's default component (used when a block names none) is the component
that declares ``is_default = True``; the kernel names no default of its own.

>>> KIND_BY_NAME["frameworks"].singular
'framework'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Place:
    """Where blocks of a kind sit in an experiment file.

    :param path: keys from the document root; ``"*"`` stands for every item of a list.
    :param form: ``"block"`` (a mapping naming its component by the selector key),
        ``"name"`` (a string naming a component) or ``"name_or_block"`` (either).
    """

    path: tuple[str, ...]
    form: str = "block"


@dataclass(frozen=True)
class Kind:
    """One kind of component.

    :param plural: the registry key, the hook's suffix (``register_frameworks``) and the
        word of ``labsim list``.
    :param singular: the name of its definitions (``$defs/framework``, ``$defs/framework_name``).
    :param base: the class its components subclass (or, for instances, are made from),
        looked up in :mod:`labsim.components` by name.
    :param selector: the key of a block that names the component (``type``).
    :param target: the key of a block its ``config_schema`` checks (``config``); empty when
        the schema checks the whole block.
    :param places: where the kind's blocks sit in an experiment file (may be none: other
        components' schemas refer to ``$defs/<singular>``).
    """

    plural: str
    singular: str
    base: str
    selector: str = "type"
    target: str = ""
    places: tuple[Place, ...] = ()


#: Every kind of component, in the order ``labsim list`` and the registry use.
KINDS_TABLE: tuple[Kind, ...] = (
    Kind(
        "devices",
        "device",
        "Device",
        selector="device_type",
        places=(
            Place(("hardware_profile", "device"), "name"),
            Place(("hardware_profile", "compute_devices", "*")),
        ),
    ),
    Kind("topologies", "topology", "Topology", places=(Place(("hardware_profile", "topology"), "name_or_block"),)),
    Kind("collectives", "collective", "Collective"),
    Kind("frameworks", "framework", "Framework", target="config", places=(Place(("frameworks_to_test", "*")),)),
    Kind("models", "model", "Component"),
    Kind("distributions", "distribution", "Distribution"),
    Kind("workloads", "workload", "Workload", places=(Place(("workload",)),)),
    Kind("schedulers", "scheduler", "Scheduler"),
    Kind("sharing_modes", "sharing_mode", "SharingMode", places=(Place(("hardware_profile", "sharing")),)),
    Kind("metric_sinks", "metric_sink", "MetricSink", places=(Place(("metrics_config", "sinks", "*"), "name"),)),
)

KIND_BY_NAME: dict[str, Kind] = {kind.plural: kind for kind in KINDS_TABLE}

#: the plural names, as the registry and ``labsim list`` use them
KINDS: tuple[str, ...] = tuple(KIND_BY_NAME)


def base_class(kind: Kind) -> type:
    """The base class of *kind*'s components."""
    from labsim import components

    return getattr(components, kind.base)
