"""Topologies: presets, customisation, paths and link bandwidths."""

from dataclasses import dataclass

import labsim_gpus.topology as T
import pytest
from labsim.errors import UsageError
from labsim.testing import make_registry


@dataclass(eq=False)
class StandIn:
    """A tiny GPU with the attributes topologies read."""

    name: str = "H100-SXM"
    nvlink_bw: float = 450e9
    host_link_bw: float = 64e9
    mem_bw: float = 3.35e12


def preset(name, device=None, **spec):
    topo = next(p for p in T.PRESETS if p.name == name).with_device(device or StandIn())
    return topo.customize(spec) if spec else topo


def test_presets_registered():
    registry = make_registry(T)
    for name in ("dgx-a100", "dgx-h100", "hgx-h200", "hgx-b200", "pcie-l40s", "custom"):
        assert registry.get("topologies", name).name == name
    assert registry.get("topologies", "hgx-h100").name == "dgx-h100"


def test_customize_cluster_and_schema_fields():
    topo = preset("dgx-h100", nodes=4, nic="ndr", fabric="fat-tree", oversubscription=2)
    assert topo.world_size == 32 and topo.fabric == "fat-tree" and topo.oversubscription == 2
    assert set(T.CONFIG_SCHEMA["properties"]) >= {"nodes", "nic", "fabric", "oversubscription"}
    base = preset("dgx-h100")
    assert base.nodes == 1  # customize returns a copy


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"nic": "fddi"}, "nic"),
        ({"oversubscription": 0.5}, "oversubscription"),
        ({"nodes": 0}, "nodes"),
        ({"colour": 1}, "colour"),
        ({"fabric": "torus"}, "fabric"),
    ],
)
def test_customize_rejects_bad_fields(spec, field):
    with pytest.raises(UsageError, match=field):
        preset("dgx-h100", **spec)


def test_nvswitch_path_and_bandwidth():
    topo = preset("dgx-h100")
    assert topo.path(0, 5) == [("n0.g0.nvl", 1), ("n0.g5.nvl", -1)]
    assert topo.link("n0.g0.nvl").bandwidth == 450e9
    assert topo.link_class(0, 5) == "nvlink"


def test_pcie_path_crosses_switch_uplinks_and_sockets():
    topo = preset("pcie-l40s", StandIn("L40S", 0.0, 32e9, 864e9))
    assert topo.link_class(0, 1) == "pcie"
    same_switch = [n for n, _ in topo.path(0, 1)]
    assert same_switch == ["n0.g0.pcie", "n0.g1.pcie"]
    across = [n for n, _ in topo.path(0, 7)]
    assert across == ["n0.g0.pcie", "n0.sw0.up", "n0.cpu", "n0.sw1.up", "n0.g7.pcie"]
    assert topo.link("n0.g0.pcie").bandwidth == pytest.approx(31.5e9)


def test_nvlink_pairs_bridge_only_pairs():
    topo = T.box_for_device(StandIn("A100-PCIe-80GB", 300e9, 32e9, 1.9e12))
    assert topo.intra == "nvlink-pairs"
    assert topo.link_class(0, 1) == "nvlink" and topo.link_class(1, 2) == "pcie"


def test_net_path_fat_tree_oversubscription():
    topo = preset("dgx-h100", nodes=4, fabric="fat-tree", nodes_per_leaf=2, oversubscription=2)
    same_leaf = [n for n, _ in topo.path(0, 8)]
    assert same_leaf == ["n0.nic0", "n1.nic0"]
    cross = topo.path(0, 16)
    assert [n for n, _ in cross] == ["n0.nic0", "leaf0.up", "leaf1.up", "n2.nic0"]
    up = topo.link("leaf0.up")
    assert up.bandwidth == pytest.approx(2 * 8 * 50e9 / 2)  # 16 NDR ports over 2:1
    assert topo.path_latency(0, 16) > topo.path_latency(0, 8)


def test_rail_fabric_keeps_rail():
    topo = preset("dgx-a100", nodes=2)
    assert [n for n, _ in topo.path(3, 8 + 5)] == ["n0.nic3", "n1.nic3"]
    assert topo.link("n0.nic3").bandwidth == pytest.approx(25e9)  # HDR 200 Gb/s


def test_links_crossed_and_enumeration():
    topo = preset("dgx-h100", nodes=2)
    a, b = topo.links_crossed(range(0, 8)), topo.links_crossed(range(8, 16))
    assert a and b and not (a & b)
    assert any(link.kind == "nic" for link in topo.links())
    with pytest.raises(UsageError, match="ranks"):
        topo.check_ranks([0, 99])


def test_with_device_and_lazy_device():
    other = StandIn("B200", 900e9, 64e9, 8e12)
    topo = preset("dgx-h100").with_device(other)
    assert topo.device is other and topo.link("n0.g1.nvl").bandwidth == 900e9
    with pytest.raises(UsageError, match="device"):
        _ = next(p for p in T.PRESETS if p.name == "custom").device


def test_box_inference():
    assert T.box_for_device(StandIn()).nvls is True
    assert T.box_for_device(StandIn("A100-SXM4-80GB", 300e9, 32e9, 2e12)).nvls is False
    assert T.box_for_device(StandIn("L4", 0.0, 32e9, 3e11)).intra == "pcie"


def test_degraded_links_slow_the_named_link_only():
    healthy = preset("dgx-h100", nodes=2)
    slow = preset("dgx-h100", nodes=2, degraded_links={"n1.nic3": 0.5})
    assert slow.link("n1.nic3").bandwidth == pytest.approx(healthy.link("n1.nic3").bandwidth / 2)
    assert slow.link("n1.nic2").bandwidth == healthy.link("n1.nic2").bandwidth
    assert slow.link("n0.nic3").bandwidth == healthy.link("n0.nic3").bandwidth


@pytest.mark.parametrize("links, message", [
    ({"n2.nic0": 0.5}, "no link 'n2.nic0' in 2 node"),
    ({"n1.nic0": 0}, "'degraded_links.n1.nic0' must be a fraction"),
    ({"n1.nic0": 1.5}, "0 < f ≤ 1"),
    (["n1.nic0"], "must map link names"),
])
def test_degraded_links_refuse_unknown_names_and_bad_fractions(links, message):
    with pytest.raises(UsageError, match=message):
        preset("dgx-h100", nodes=2, degraded_links=links)
