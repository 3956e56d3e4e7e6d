"""LLM request workloads: ``client_profiles`` (synthetic mixes) and ``trace`` (CSV replay).

Both produce :class:`labsim_llm.request.Request` objects for one target
framework; see :mod:`labsim_llm.workloads.base` for what they share.
"""

from labsim_llm.workloads.base import ArrivalStream, RequestWorkload, Sampler, Session
from labsim_llm.workloads.profiles import ClientProfilesWorkload
from labsim_llm.workloads.trace import BUILTIN_TRACES, TraceWorkload, load_trace

#: every workload class this plugin registers
WORKLOADS = (ClientProfilesWorkload, TraceWorkload)

__all__ = [
    "ArrivalStream",
    "BUILTIN_TRACES",
    "ClientProfilesWorkload",
    "RequestWorkload",
    "Sampler",
    "Session",
    "TraceWorkload",
    "WORKLOADS",
    "load_trace",
]
