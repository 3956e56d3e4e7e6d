"""benchmarks/collectives_local_copy.py: its refit of the shipped model (candidate A) gives the
shipped constants, a candidate changes only what gather/scatter pay locally, and every
constant and plan it patches is restored afterwards."""

from __future__ import annotations

import sys

import labsim
import pytest
from labsim_collectives import params as P
from labsim_collectives.plugin import BY_NAME


@pytest.fixture(scope="module")
def bench(root):
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import collectives_local_copy

        yield collectives_local_copy
    finally:
        sys.path.remove(str(root / "benchmarks"))


def test_candidate_a_refits_to_the_shipped_constants(bench):
    with bench.candidate(bench.CANDIDATES["A"]):
        fitted = bench.refit_a100(bench.CANDIDATES["A"])
        simple_eff = bench.refit_hopper_simple()
    for proto, shipped in P.NVLINK.items():
        assert fitted[proto].base == pytest.approx(shipped.base, rel=0.01)
        assert fitted[proto].alpha == pytest.approx(shipped.alpha, rel=0.01)
        assert fitted[proto].eff == pytest.approx(shipped.eff, rel=0.01)
    assert simple_eff == P.HOPPER.nvlink["Simple"].eff


def test_a_candidate_moves_gather_scatter_only_and_is_undone(bench):
    topo = labsim.topology("dgx-h100")
    size, n = 1 << 30, 4
    shipped_params = (dict(P.NVLINK), dict(P.GENERATIONS))
    before = {op: BY_NAME[op].time(size, ranks=n, topology=topo) for op in ("all_reduce", "all_gather")}
    with bench.candidate(bench.CANDIDATES["D"]):
        during = {op: BY_NAME[op].time(size, ranks=n, topology=topo) for op in before}
        bench.refit_a100(bench.CANDIDATES["D"])
    after = {op: BY_NAME[op].time(size, ranks=n, topology=topo) for op in before}
    gamma_s = 2 * size / topo.device.mem_bw
    # D: an all_gather on 4 GPUs pays (n+1)/(2n) = 5/8 of γ·S, the rest unchanged
    assert before["all_gather"] - during["all_gather"] == pytest.approx(3 / 8 * gamma_s, rel=1e-6)
    assert during["all_reduce"] == before["all_reduce"]
    assert after == before
    assert (dict(P.NVLINK), dict(P.GENERATIONS)) == shipped_params
