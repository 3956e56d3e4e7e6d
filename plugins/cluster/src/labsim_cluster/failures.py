"""Failure kinds of a cluster: what ends a job's run before it completes, at what rate, and
the incidents (node outages, leaf partitions, spot reclaims) that end every job they touch.

``failures:`` in a cluster's config turns them on (absent: no failures; ``{}``: the defaults
below). Each kind is a row of the ``attempts`` table's ``failure`` column and a count in
summary.json's ``failures.by_kind``:

========== ======================================================= ==============================
kind       what                                                    rate (default)
========== ======================================================= ==============================
xid        a GPU fault: CUDA/Xid errors, HBM and SRAM ECC errors,  ``xid_per_gpu_hour`` per GPU a
           the GPU system processor, silent data corruption,       job holds
           thermal faults
software   a software bug or a broken dependency in the job        ``software_per_gpu_hour``
node       the host fails (maintenance, NIC, SSD, power supply,    ``node_mtbf_h`` per node; ends
           chassis, CPU, memory): every job on it ends; the node   every job on the node
           is down ``node_repair_h``
partition  a leaf switch or its cables fail: every job spread      ``partitions_per_gpu_hour`` per
           over several nodes with one under that leaf fails       GPU under the leaf
           (``partition_effect: fail``) or makes no progress for
           ``partition_duration_s`` (``stall``); meanwhile no
           multi-node job is placed on the leaf
oom        out of GPU memory: a training job given by ``model``    from labsim-training's memory
           whose predicted memory per GPU exceeds the GPU's fails  estimate; ``oom_probability``
           after its first iteration                               per run of any other job
image_pull the container image cannot be pulled: the run fails     ``image_pull_failure_probability``
           after ``image_pull_timeout_s`` holding its GPUs         per run
spot       (``capacity: spot`` nodes) the provider reclaims the    the node group's
           node: every job on it is requeued at once, losing the   ``reclaims_per_node_hour``
           work since its checkpoint; the node is gone
           ``reclaim_outage_s``
========== ======================================================= ==============================

The default rates split the unexpected interruptions of Meta's Llama 3 405B pre-training —
419 in a 54-day snapshot on 16,384 H100 GPUs in 2,048 servers of 8, racks of 16 GPUs under
one top-of-rack switch (Grattafiori et al., "The Llama 3 Herd of Models", arXiv:2407.21783,
2024, §3.3.1 and §3.3.4, Table 5) — by root cause:

* xid: faulty GPU 148, GPU HBM3 memory 72, GPU SRAM memory 19, GPU system processor 17,
  silent data corruption 6, GPU thermal interface and sensor 6: 268 in 21,233,664 GPU-hours;
* software: software bug 54, dependency 2: 56 in the same GPU-hours;
* node: host maintenance (unplanned) 32, NIC 7, SSD 3, power supply 3, server chassis 2, IO
  expansion board 2, CPU 2, system memory 2: 53 in 54 × 24 × 2,048 node-hours, one every
  50,079 node-hours;
* partition: network switch/cable 35, NCCL watchdog timeouts 7: 42 in the same GPU-hours
  (the rate is per GPU under a leaf, so a leaf of more GPUs — more cables — fails more often).

The table gives no repair times and no split of OOMs or image pulls (Llama 3 ran one job with
a fixed image and layout), so ``node_repair_h`` defaults to 0 (the node is back at once),
``oom_probability`` and ``image_pull_failure_probability`` to 0: set them from your own
cluster. Acme (Hu et al., "Characterization of Large Language Model Development in the
Datacenter", NSDI'24) and Philly (Jeon et al., "Analysis of Large-Scale Multi-Tenant GPU
Clusters for DNN Training Workloads", ATC'19) count such failures per job over all causes,
mostly user errors, not per run of a healthy job. ``image_pull_timeout_s`` defaults to 120 s,
the kubelet's ``--runtime-request-timeout`` default (2m0s, Kubernetes kubelet reference),
after which the pull is abandoned.

A failed run (every kind but ``spot``) loses the work since the job's last checkpoint (every
``checkpoint_interval_s``), waits ``retry_backoff_s`` (doubling with each retry, at most
``retry_backoff_max_s``: six minutes, as a Kubernetes Job) and queues again; after
``max_retries`` failures the job fails for good. A spot reclaim requeues the job
at once and counts against no retry budget (the job did nothing wrong).

Node outages, partitions and reclaims are Poisson streams of incidents over the cluster's
nodes or leaves. Their clocks run while a job runs that one could hit: an incident drawn for
a time when nothing runs is applied when the cluster next looks (the node is down if its
repair has not ended), and no timer of theirs keeps the simulation going after the last job.
"""

from __future__ import annotations

import math

from labsim.errors import UsageError

#: GPU-hours of the Llama 3 snapshot: 54 days × 24 h × 16,384 H100s
LLAMA3_GPU_HOURS = 54 * 24 * 16384
#: server-hours of the same snapshot: 2,048 servers of 8 GPUs
LLAMA3_NODE_HOURS = 54 * 24 * 2048
#: Llama 3 Table 5, unexpected interruptions by root cause, grouped by kind
LLAMA3_XID = 148 + 72 + 19 + 17 + 6 + 6           # faulty GPU, HBM3, SRAM, GSP, SDC, thermal
LLAMA3_SOFTWARE = 54 + 2                          # software bug, dependency
LLAMA3_NODE = 32 + 7 + 3 + 3 + 2 + 2 + 2 + 2      # host maintenance, NIC, SSD, PSU, chassis, IO board, CPU, memory
LLAMA3_NETWORK = 35 + 7                           # network switch/cable, NCCL watchdog timeouts
assert LLAMA3_XID + LLAMA3_SOFTWARE + LLAMA3_NODE + LLAMA3_NETWORK == 419

XID_PER_GPU_HOUR = LLAMA3_XID / LLAMA3_GPU_HOURS
SOFTWARE_PER_GPU_HOUR = LLAMA3_SOFTWARE / LLAMA3_GPU_HOURS
NODE_MTBF_H = LLAMA3_NODE_HOURS / LLAMA3_NODE
PARTITIONS_PER_GPU_HOUR = LLAMA3_NETWORK / LLAMA3_GPU_HOURS
#: kubelet --runtime-request-timeout default, 2m0s (kubernetes.io, kubelet command-line reference)
IMAGE_PULL_TIMEOUT_S = 120.0
#: a Kubernetes Job recreates failed pods "with an exponential back-off delay (10s, 20s, 40s …)
#: capped at six minutes" (kubernetes.io/docs/concepts/workloads/controllers/job, Pod backoff
#: failure policy)
RETRY_BACKOFF_MAX_S = 360.0

KINDS = ("xid", "software", "node", "partition", "oom", "image_pull", "spot")
_CITE = " (Llama 3 Herd of Models, 2024, §3.3.4 Table 5: {} of 419 unexpected interruptions in 54 days on 16,384 H100s)"

SCHEMA = {
    "type": "object", "additionalProperties": False,
    "description": "Failure kinds (GPU Xid errors, software, node outages, leaf partitions, OOM, image "
                   "pulls) at rates from Meta's Llama 3 training unless set; a failed run loses the work "
                   "since the last checkpoint and retries after a backoff.",
    "properties": {
        "xid_per_gpu_hour": {"type": "number", "minimum": 0, "default": XID_PER_GPU_HOUR,
                             "description": "GPU faults (CUDA/Xid, HBM/SRAM ECC, GSP, SDC, thermal) per GPU-hour"
                                            + _CITE.format("268")},
        "software_per_gpu_hour": {"type": "number", "minimum": 0, "default": SOFTWARE_PER_GPU_HOUR,
                                  "description": "Software bugs and dependencies per GPU-hour" + _CITE.format("56")},
        "node_mtbf_h": {"type": "number", "exclusiveMinimum": 0, "default": NODE_MTBF_H,
                        "description": "Mean hours between failures of one node (host maintenance, NIC, SSD, "
                                       "power, chassis, CPU, memory)" + _CITE.format("53, on 2,048 servers")},
        "node_repair_h": {"type": "number", "minimum": 0, "default": 0.0,
                          "description": "Hours a failed node stays down (no published figure: yours to set)."},
        "partitions_per_gpu_hour": {"type": "number", "minimum": 0, "default": PARTITIONS_PER_GPU_HOUR,
                                    "description": "Leaf partitions (switch/cable, NCCL timeouts) per GPU-hour of "
                                                   "the GPUs under a leaf" + _CITE.format("42")},
        "partition_effect": {"enum": ["fail", "stall"], "default": "fail",
                             "description": "fail: the multi-node jobs on the leaf fail; stall: they make no "
                                            "progress for partition_duration_s."},
        "partition_duration_s": {"type": "number", "minimum": 0, "default": 0.0,
                                 "description": "How long a partition lasts: it stalls its jobs (stall) and "
                                                "keeps new multi-node jobs off its leaf (either effect; no "
                                                "published figure: yours to set)."},
        "oom_probability": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0,
                            "description": "Chance a run of a job whose memory is unknown fails out of memory at "
                                           "its start (model-given jobs: from labsim-training's memory estimate)."},
        "image_pull_failure_probability": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0,
                                           "description": "Chance a run's container image cannot be pulled."},
        "image_pull_timeout_s": {"type": "number", "minimum": 0, "default": IMAGE_PULL_TIMEOUT_S,
                                 "description": "Seconds a failing pull holds the GPUs (kubelet "
                                                "--runtime-request-timeout default, 2m0s)."},
        "checkpoint_interval_s": {"type": "number", "exclusiveMinimum": 0, "default": 3600.0,
                                  "description": "Work since the last checkpoint is lost."},
        "max_retries": {"type": "integer", "minimum": 0, "default": 3},
        "retry_backoff_s": {"type": "number", "minimum": 0, "default": 60.0,
                            "description": "Wait before the first retry; doubles each time."},
        "retry_backoff_max_s": {"type": "number", "minimum": 0, "default": RETRY_BACKOFF_MAX_S,
                                "description": "The longest wait between retries (default 360: Kubernetes' "
                                               "Job back-off, capped at six minutes)."},
    },
}


class Stream:
    """A Poisson stream of incidents over weighted targets (nodes or leaves): when the next
    comes and which target it hits, drawn from its own random stream."""

    def __init__(self, kind: str, rate_per_s: float, targets: list[int], weights: list[float], rng):
        self.kind = kind
        self.rate = rate_per_s
        self.targets = targets
        total = float(sum(weights))
        self.cum = [0.0]
        for w in weights:
            self.cum.append(self.cum[-1] + w / total)
        self.rng = rng
        self.next_at = self._gap(0.0)
        self.token = None          # the armed timer's token (None: not armed)
        self.count = 0

    def _gap(self, now: float) -> float:
        return now + float(self.rng.exponential(1.0 / self.rate)) if self.rate > 0 and self.targets else math.inf

    def take(self) -> tuple[float, int]:
        """The next incident ``(time, target)``; draws the one after."""
        at = self.next_at
        u = float(self.rng.random())
        lo, hi = 0, len(self.targets) - 1
        while lo < hi:                 # the first target whose cumulative weight exceeds u
            mid = (lo + hi) // 2
            if self.cum[mid + 1] > u:
                hi = mid
            else:
                lo = mid + 1
        self.next_at = self._gap(at)
        self.count += 1
        return at, self.targets[lo]


class Failures:
    """The per-run failure draws of one cluster (see the module docs); the cluster applies them."""

    def __init__(self, config: dict, rng, label: str):
        self.config = config
        self.rng = rng
        self.hazard = {"xid": float(config.get("xid_per_gpu_hour", XID_PER_GPU_HOUR)) / 3600,
                       "software": float(config.get("software_per_gpu_hour", SOFTWARE_PER_GPU_HOUR)) / 3600}
        self.per_gpu_s = sum(self.hazard.values())
        self.oom_p = float(config.get("oom_probability", 0.0))
        self.pull_p = float(config.get("image_pull_failure_probability", 0.0))
        self.pull_s = float(config.get("image_pull_timeout_s", IMAGE_PULL_TIMEOUT_S))
        self.checkpoint_s = float(config.get("checkpoint_interval_s", 3600.0))
        self.max_retries = int(config.get("max_retries", 3))
        self.backoff_s = float(config.get("retry_backoff_s", 60.0))
        self.backoff_max_s = float(config.get("retry_backoff_max_s", RETRY_BACKOFF_MAX_S))
        self.effect = config.get("partition_effect", "fail")
        self.partition_s = float(config.get("partition_duration_s", 0.0))
        if self.effect == "stall" and self.partition_s <= 0:
            raise UsageError(f"{label}: failures.partition_effect stall needs partition_duration_s > 0 "
                             "(how long the leaf's jobs make no progress)")

    def at_start(self, job, oom_after_s: float | None) -> tuple[str, float] | None:
        """A failure the run meets as it starts: ``(kind, seconds into the run)``, or None.
        *oom_after_s*: the run's first iteration when its predicted memory does not fit (None:
        it fits, or its memory is unknown and ``oom_probability`` decides)."""
        if self.pull_p > 0 and float(self.rng.random()) < self.pull_p:
            return "image_pull", self.pull_s
        if oom_after_s is not None:
            return "oom", oom_after_s
        if self.oom_p > 0 and job.shape is None and float(self.rng.random()) < self.oom_p:
            return "oom", 0.0
        return None

    def during(self, job, run_s: float) -> tuple[str, float] | None:
        """A fault of the job's own GPUs or software within *run_s* seconds: ``(kind, after)``."""
        if self.per_gpu_s <= 0:
            return None
        ttf = float(self.rng.exponential(1.0 / (self.per_gpu_s * job.gpus)))
        if ttf >= run_s:
            return None
        kind = "xid" if float(self.rng.random()) * self.per_gpu_s < self.hazard["xid"] else "software"
        return kind, ttf

    def backoff(self, failures: int) -> float:
        """Seconds to wait after a job's *failures*-th failure: doubling, capped."""
        return min(self.backoff_s * 2.0 ** min(failures - 1, 64), self.backoff_max_s)

    def kept(self, attained_s: float) -> float:
        """Work-seconds a run keeps from *attained_s*: up to its last checkpoint."""
        return (attained_s // self.checkpoint_s) * self.checkpoint_s


__all__ = ["Failures", "KINDS", "NODE_MTBF_H", "PARTITIONS_PER_GPU_HOUR", "SCHEMA", "SOFTWARE_PER_GPU_HOUR",
           "Stream", "XID_PER_GPU_HOUR"]
