"""The vLLM replica's layers type-check: ``mypy --check-untyped-defs`` on ``labsim_vllm``.

Each layer of the replica (:mod:`labsim_vllm.state`) reads state and calls methods declared,
typed, in :class:`~labsim_vllm.state.ReplicaState`; a layer that used an attribute nobody
declares, or passed a ``None`` where a list must be, fails here rather than in a run. It is
also what compiling the layers with mypyc asks of them. Skipped where mypy is not installed
(``requirements-dev.txt`` installs it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _source_root(module) -> str:
    """The directory a package is imported from (``src/`` of an editable install)."""
    return str(Path(module.__file__).resolve().parent.parent)


def test_labsim_vllm_type_checks(tmp_path):
    api = pytest.importorskip("mypy.api")
    import labsim
    import labsim_collectives
    import labsim_gpus
    import labsim_llm
    import labsim_vllm

    roots = [_source_root(m) for m in (labsim_vllm, labsim_llm, labsim, labsim_gpus, labsim_collectives)]
    env_path = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = os.pathsep.join(roots[1:])
    try:
        out, err, status = api.run(["--check-untyped-defs", "--ignore-missing-imports",
                                    "--no-error-summary", "--cache-dir", str(tmp_path),
                                    str(Path(roots[0]) / "labsim_vllm")])
    finally:
        if env_path is None:
            del os.environ["MYPYPATH"]
        else:
            os.environ["MYPYPATH"] = env_path
    assert status == 0, out + err
