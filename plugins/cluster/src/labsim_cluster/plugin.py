"""labsim entry point: the ``jobs`` workload, the ``cluster`` framework, its scheduling policies,
the ``sql`` metric sink (a shared job store) and ``labsim jobs``."""

from __future__ import annotations

from labsim import hookimpl

from labsim_cluster.cluster import Cluster
from labsim_cluster.gavel import Gavel
from labsim_cluster.jobs import JobsWorkload
from labsim_cluster.policies import POLICIES


@hookimpl
def register_workloads(register):
    register(JobsWorkload)


@hookimpl
def register_frameworks(register):
    register(Cluster)


@hookimpl
def register_schedulers(register):
    for cls in (*POLICIES, Gavel):
        register(cls)


@hookimpl
def register_metric_sinks(register):
    from labsim_cluster.sql_store import SqlSink  # imports SQLAlchemy only when a run uses it

    register(SqlSink)


@hookimpl
def register_commands(cli):
    from labsim_cluster.query import jobs_command

    cli.add_command(jobs_command)
