"""The TensorRT-LLM plugin type-checks: ``mypy --check-untyped-defs`` on ``labsim_trtllm``.

The executor replica's layers (:mod:`labsim_trtllm.state`) read state and call methods
declared, typed, in :class:`~labsim_trtllm.state.ExecutorState`; a layer that used an
attribute nobody declares, or passed a ``None`` where a cohort must be, fails here rather than
in a run. It is also what compiling the layers with mypyc asks of them. Skipped where mypy is
not installed (``requirements-dev.txt`` installs it).
"""

from __future__ import annotations

import pytest


def test_labsim_trtllm_type_checks(tmp_path):
    pytest.importorskip("mypy.api")
    import labsim
    import labsim_collectives
    import labsim_gpus
    import labsim_llm
    import labsim_trtllm
    from labsim.testing import type_errors

    assert type_errors(labsim_trtllm, labsim_llm, labsim, labsim_gpus, labsim_collectives,
                       cache_dir=str(tmp_path)) == ""
