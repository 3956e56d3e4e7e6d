"""The ``gavel`` scheduler: heterogeneity-aware allocation of GPU types (Narayanan et al.,
"Heterogeneity-Aware Cluster Scheduling Policies for Deep Learning Workloads", OSDI'20).

On a cluster of several GPU types a job's throughput differs per type (the cluster's
``throughputs`` table; ``builtin:gavel`` holds Gavel's own measurements). Gavel writes a policy
as an optimisation over an *allocation* ``X[m, t]``: the fraction of time job *m* should spend
on type *t*, with ``Σ_t X[m, t] ≤ 1`` per job and ``Σ_m gpus_m · X[m, t] ≤ GPUs of t`` per type.
Here, with ``r[m, t]`` the job's speed on *t* relative to the reference type and
``e_m = Σ_t r[m, t] · GPUs_t / GPUs`` its speed on an equal, type-blind share of the cluster:

* ``objective: max_min_fairness`` (Gavel §4.1, heterogeneity-aware LAS): maximise
  ``min_m Σ_t r[m, t] · X[m, t] / e_m``; among the allocations that reach the optimum, the one
  with the largest total of those normalised throughputs (so capacity the bottleneck jobs
  cannot use is not left idle);
* ``objective: max_total_throughput`` (Gavel §4.2): maximise ``Σ_m Σ_t r[m, t] · X[m, t] / e_m``.

The allocation is recomputed when the set of jobs changes and realised by Gavel's round-based
mechanism (§5): every ``round_s`` (Gavel's 6-minute rounds) each (job, type) pair gets the
priority ``X[m, t] / share[m, t]``, where ``share`` is the fraction of its time in the system
the job has run on *t* (a pair it has not had yet goes first); pairs are granted best first,
one type per job, while the type has GPUs. A running job granted its own type again keeps
running; one granted another type, or none, is preempted (checkpoint, and the cluster's
``preemption_overhead_s`` when it resumes).

The linear programs are solved with SciPy's HiGHS (``pip install 'labsim-cluster[gavel]'``).
Gavel's space sharing (two jobs on one GPU) is not modelled.
"""

from __future__ import annotations

import numpy as np
from labsim.errors import UsageError

from labsim_cluster.policies import _Policy, _schema

OBJECTIVES = ("max_min_fairness", "max_total_throughput")


class Gavel(_Policy):
    """Heterogeneity-aware allocation of GPU types, realised in rounds (see the module docs)."""

    name = "gavel"
    rounds = True
    config_schema = _schema(
        objective={"enum": list(OBJECTIVES), "default": "max_min_fairness",
                   "description": "max_min_fairness: Gavel's heterogeneity-aware LAS; "
                                  "max_total_throughput: the most normalised work per second."},
        round_s={"type": "number", "exclusiveMinimum": 0, "default": 360.0,
                 "description": "Seconds per scheduling round (Gavel: 6 minutes)."})

    def __init__(self, config, context):
        super().__init__(config, context)
        try:
            from scipy.optimize import linprog  # noqa: F401
        except ImportError:
            raise UsageError("scheduler gavel solves linear programs with SciPy: "
                             "pip install 'labsim-cluster[gavel]' (or pip install scipy)") from None
        self.objective = config.get("objective", "max_min_fairness")
        self.round_s = float(config.get("round_s", 360.0))
        self._key: tuple | None = None
        self._alloc: dict[int, np.ndarray] = {}
        self.solves = 0

    def assign(self, now: float) -> list[tuple]:
        """The round's plan: ``[(job, type)]``, best priority first."""
        c = self.cluster
        jobs = sorted(c.running + c.queue, key=lambda j: (j.arrival_s, j.job_id))
        if not jobs:
            return []
        key = tuple(id(j) for j in jobs)
        if key != self._key:
            self._alloc = self._allocate(jobs)
            self._key = key
        pairs = []
        for j in jobs:
            x = self._alloc.get(id(j))
            if x is None:
                continue
            alive = max(now - j.arrival_s, 1e-9)
            for t, share in enumerate(x):
                if share <= 1e-9:
                    continue
                had = j.type_s.get(t, 0.0)
                if j.run_began is not None and j.type_index == t:
                    had += now - j.run_began
                got = had / alive
                prio = share / got if got > 0 else float("inf")
                pairs.append((-prio, j.arrival_s, j.job_id, t, j))
        pairs.sort(key=lambda p: p[:4])
        room = list(c.nodes.capacity_by_type)
        plan, taken = [], set()
        for _, _, _, t, j in pairs:
            if id(j) in taken or j.gpus > room[t]:
                continue
            taken.add(id(j))
            room[t] -= j.gpus
            plan.append((j, t))
        return plan

    def _allocate(self, jobs) -> dict[int, np.ndarray]:
        """``X`` per job (see the module docs), by linear programming."""
        from scipy.optimize import linprog
        from scipy.sparse import coo_matrix

        c = self.cluster
        caps = np.asarray(c.nodes.capacity_by_type, dtype=float)
        T = len(caps)
        r = np.asarray([[c.rates.type_speed(j, t) if j.gpus <= caps[t] else 0.0 for t in range(T)]
                        for j in jobs])
        equal = (r * caps).sum(axis=1) / caps.sum()
        live = np.flatnonzero(equal > 0)
        jobs = [jobs[i] for i in live]
        norm = r[live] / equal[live, None]
        gpus = np.asarray([j.gpus for j in jobs], dtype=float)
        M = len(jobs)
        cells = [(m, t) for m in range(M) for t in range(T) if norm[m, t] > 0]
        n = len(cells)
        rows, cols, vals, rhs = [], [], [], []
        for k, (m, t) in enumerate(cells):        # Σ_t X[m, t] ≤ 1
            rows.append(m), cols.append(k), vals.append(1.0)
        rhs += [1.0] * M
        for k, (m, t) in enumerate(cells):        # Σ_m gpus_m X[m, t] ≤ GPUs of t
            rows.append(M + t), cols.append(k), vals.append(gpus[m])
        rhs += list(caps)
        gain = np.asarray([norm[m, t] for m, t in cells])
        total = -gain
        self.solves += 1
        if self.objective == "max_min_fairness":
            # variables: the cells, then z; z − Σ_t norm[m, t] X[m, t] ≤ 0 for every job
            base = M + T
            for k, (m, t) in enumerate(cells):
                rows.append(base + m), cols.append(k), vals.append(-norm[m, t])
            for m in range(M):
                rows.append(base + m), cols.append(n), vals.append(1.0)
            a = coo_matrix((vals, (rows, cols)), shape=(base + M, n + 1)).tocsr()
            b = np.asarray(rhs + [0.0] * M)
            cost = np.zeros(n + 1)
            cost[n] = -1.0
            first = linprog(cost, A_ub=a, b_ub=b, bounds=[(0, 1)] * n + [(0, None)], method="highs")
            z = float(first.x[n]) if first.status == 0 else 0.0
            # the same floor for every job (a hair below, for the solver's tolerance); then the most work
            cost2 = np.concatenate([total, [0.0]])
            res = linprog(cost2, A_ub=a, b_ub=b, bounds=[(0, 1)] * n + [(z * (1 - 1e-6), z * (1 - 1e-6))],
                          method="highs")
            x = res.x[:n] if res.status == 0 else (first.x[:n] if first.status == 0 else np.zeros(n))
        else:
            a = coo_matrix((vals, (rows, cols)), shape=(M + T, n)).tocsr()
            res = linprog(total, A_ub=a, b_ub=np.asarray(rhs), bounds=[(0, 1)] * n, method="highs")
            x = res.x if res.status == 0 else np.zeros(n)
        out = {id(j): np.zeros(T) for j in jobs}
        for k, (m, t) in enumerate(cells):
            out[id(jobs[m])][t] = max(0.0, float(x[k]))
        return out


__all__ = ["Gavel", "OBJECTIVES"]
