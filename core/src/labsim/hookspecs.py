"""Hook specifications for labsim plugins.

Every hook labsim calls is declared here and documented, with an example, in
``docs/plugin_hooks.md``. Each ``register_<plural>`` hook receives a
``register`` callback; call it once per component. A registered component
names itself with a ``name`` attribute (unique across installed plugins),
may list ``aliases``, describes itself in one line (``description`` or the
first docstring line) and carries the JSON Schema of its own configuration
block as ``config_schema``.

Arguments are keyword API: an implementation may accept fewer arguments than
a spec declares, and specs only ever gain arguments.
"""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("labsim")
hookimpl = HookimplMarker("labsim")


# -- hardware --------------------------------------------------------------------------


@hookspec
def register_devices(register):
    """Register compute devices (GPUs), e.g. ``register(H100_SXM)``.

    :param register: call once per :class:`labsim.Device` instance.
    """


@hookspec
def register_topologies(register):
    """Register interconnect topologies (boxes and clusters), e.g. ``register(DGX_H100)``.

    :param register: call once per :class:`labsim.Topology` instance.
    """


@hookspec
def register_collectives(register):
    """Register collective operations (``all_reduce`` ...) and their algorithms.

    :param register: call once per :class:`labsim.Collective` instance.
    """


@hookspec
def register_sharing_modes(register):
    """Register GPU sharing modes (time-slicing, MPS, MIG).

    :param register: call once per sharing-mode class.
    """


# -- workloads and engines ---------------------------------------------------------------


@hookspec
def register_models(register):
    """Register entries of the model characteristics database.

    :param register: call once per model object (``name``, ``aliases``).
    """


@hookspec
def register_frameworks(register):
    """Register serving or training frameworks, keyed by the experiment file's ``type``.

    :param register: call once per :class:`labsim.Framework` subclass.
    """


@hookspec
def register_workloads(register):
    """Register workload generators, keyed by ``workload.type``.

    :param register: call once per :class:`labsim.Workload` subclass.
    """


@hookspec
def register_distributions(register):
    """Register random distributions usable in any ``*_dist_config`` block.

    :param register: call once per :class:`labsim.Distribution` subclass.
    """


@hookspec
def register_schedulers(register):
    """Register cluster scheduling policies (FIFO, backfill, ...).

    :param register: call once per scheduler class.
    """


# -- output and command line -----------------------------------------------------------


@hookspec
def register_metric_sinks(register):
    """Register metric sinks that write a run's tables and summary.

    :param register: call once per :class:`labsim.MetricSink` subclass.
    """


@hookspec
def register_commands(cli):
    """Register extra ``labsim`` subcommands on the click group *cli*.

    :param cli: the top-level :class:`click.Group`; decorate new commands with
        ``@cli.command()``.
    """


@hookspec
def register_report_sections(register):
    """Register sections of ``labsim report`` (labsim-report): callables that take the finished
    run (``run.summary``: summary.json as a dict; ``run.table(name)``: a CSV of the run as a list
    of dicts, or None; ``run.figure(fig)``: a matplotlib figure as inline SVG) and return
    ``(title, html)`` pairs, or nothing when the run has no data of theirs.

    :param register: call with each section function.

    >>> def jobs_section(run):                                          # doctest: +SKIP
    ...     rows = run.table("jobs")
    ...     if rows:
    ...         yield "Jobs", f"<p>{len(rows)} jobs</p>"
    """
