"""labsim-llm's compiled twins: the engine modules its
``setup.py`` compiles with mypyc (:mod:`labsim.native`).

>>> from labsim_llm import native
>>> sorted(native.status())
['draws', 'frontend', 'kv_cache', 'replay', 'request', 'request_workload', 'router', 'serving_engine', 'serving_metrics', 'step_cost', 'step_runs', 'timers']
"""

from __future__ import annotations

from labsim import native as _native

#: modules compiled into twins, by twin name: their path under ``src/labsim_llm``
#: (setup.py reads the next line)
MODULES = {"kv_cache": "engine/kv_cache.py", "step_runs": "engine/step_runs.py", "step_cost": "engine/step_cost.py", "serving_metrics": "engine/serving_metrics.py", "frontend": "engine/frontend.py", "draws": "workloads/draws.py", "request_workload": "workloads/base.py", "serving_engine": "engine/serving_engine.py", "replay": "workloads/replay.py", "router": "engine/router.py", "timers": "engine/timers.py", "request": "request.py"}
#: packages whose sources mypyc reads to type the twins (setup.py reads the next line): the
#: request workload and the serving engine build on labsim's Workload and Framework
SIBLINGS = ["labsim"]


def status() -> dict[str, str]:
    """How each module of :data:`MODULES` runs in this process: ``"compiled"`` or why not."""
    return _native.package_status(__name__.rpartition(".")[0], MODULES)
