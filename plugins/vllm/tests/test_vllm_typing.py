"""The vLLM replica's layers type-check: ``mypy --check-untyped-defs`` on ``labsim_vllm``.

Each layer of the replica (:mod:`labsim_vllm.state`) reads state and calls methods declared,
typed, in :class:`~labsim_vllm.state.ReplicaState`; a layer that used an attribute nobody
declares, or passed a ``None`` where a list must be, fails here rather than in a run. It is
also what compiling the layers with mypyc asks of them. Skipped where mypy is not installed
(``requirements-dev.txt`` installs it).
"""

from __future__ import annotations

import pytest


def test_labsim_vllm_type_checks(tmp_path):
    pytest.importorskip("mypy.api")
    import labsim
    import labsim_collectives
    import labsim_gpus
    import labsim_llm
    import labsim_vllm
    from labsim.testing import type_errors

    assert type_errors(labsim_vllm, labsim_llm, labsim, labsim_gpus, labsim_collectives,
                       cache_dir=str(tmp_path)) == ""
