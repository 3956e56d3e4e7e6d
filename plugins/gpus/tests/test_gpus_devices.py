"""Presets, lookup, inline devices and validation of labsim-gpus."""

import labsim
import labsim_gpus.plugin as plugin
import pytest
from labsim.errors import LabsimError, UnknownNameError, UsageError
from labsim.testing import make_registry
from labsim_gpus import GPU
from labsim_gpus.params import DATASHEET_DEFAULTS, FIELDS
from labsim_gpus.spec import CONFIG_SCHEMA

NAMES = ["V100-SXM2-32GB", "A100-SXM4-40GB", "A100-SXM4-80GB", "A100-PCIe-40GB", "A100-PCIe-80GB",
         "H100-SXM", "H100-PCIe", "H200-SXM", "B200", "L4", "L40S", "RTX-A6000", "RTX-4090", "GPU"]


@pytest.fixture(scope="module")
def registry():
    return make_registry(plugin)


def test_every_preset_is_registered(registry):
    assert set(NAMES) <= set(registry.names("devices"))
    for name in NAMES:
        device = registry.get("devices", name)
        assert isinstance(device, GPU) and isinstance(device, labsim.Device)
        assert device.memory_bytes > 0 and device.mem_bw > 0 and device.sm_count > 0
        assert device.price_per_hour > 0 and device.tdp_w > 0 and device.description


@pytest.mark.parametrize("alias,name", [("h100", "H100-SXM"), ("H100-SXM5-80GB", "H100-SXM"),
                                        ("a100", "A100-SXM4-80GB"), ("A100-80GB", "A100-SXM4-80GB"),
                                        ("a100-sxm", "A100-SXM4-80GB"), ("h200", "H200-SXM")])
def test_aliases_are_case_insensitive(registry, alias, name):
    assert registry.get("devices", alias).name == name
    assert registry.get("devices", alias.upper()).name == name


def test_datasheet_figures():
    h100 = plugin.preset("h100")
    assert h100.peak_flops["bf16"] == pytest.approx(989.4e12)
    assert h100.mem_bw == pytest.approx(3.35e12)
    assert h100.nvlink_bw == pytest.approx(450e9)  # 900 GB/s bidirectional
    assert h100.memory_bytes == pytest.approx(79.2 * 2**30)  # what CUDA reports on an 80 GB H100
    assert plugin.preset("L4").nvlink_bw == 0


def test_unsupported_precision_is_a_clear_error():
    a100 = plugin.preset("A100-SXM4-80GB")
    assert not a100.supports("fp8") and a100.supports("bfloat16")
    with pytest.raises(UsageError, match="fp8.*not supported on A100-SXM4-80GB"):
        a100.gemm_time(16, 4096, 4096, "fp8")
    with pytest.raises(UsageError, match="bf16.*V100"):
        plugin.preset("v100").gemm_time(16, 4096, 4096, "bf16")
    with pytest.raises(UsageError, match="not a known precision"):
        a100.gemm_time(16, 4096, 4096, "fp7")


def test_bad_shapes_are_clear_errors():
    a100 = plugin.preset("a100")
    with pytest.raises(UsageError, match="m must be"):
        a100.gemm_time(-1, 8, 8)
    with pytest.raises(UsageError, match="num_heads .* multiple of num_kv_heads"):
        a100.attention_time("decode", seq_len=8, num_heads=6, num_kv_heads=4, head_dim=128)
    with pytest.raises(UsageError, match="phase"):
        a100.attention_time("train", seq_len=8, num_heads=8, num_kv_heads=8, head_dim=128)
    with pytest.raises(UsageError, match="memcpy kind"):
        a100.memcpy_time(10, "p2p")


def test_unknown_device_suggests(registry):
    with pytest.raises(UnknownNameError, match="Did you mean"):
        registry.get("devices", "H100-SMX")


def test_inline_seed_device():
    spec = {"peak_tflops": {"fp16": 312, "int8": 624}, "memory_capacity_bytes": 80_000_000_000,
            "memory_gbps": 2000, "processing_units": 108}
    gpu = plugin.preset("GPU").customize(spec)
    assert gpu.peak_flops["fp16"] == 312e12 and gpu.peak_flops["bf16"] == 312e12
    assert gpu.mem_bw == 2000e9 and gpu.sm_count == 108
    assert gpu.gemm_time(1024, 1024, 1024, "fp16") > 0
    slower = plugin.preset("GPU").customize({**spec, "memory_gbps": 1000})
    assert slower.gemm_time(1, 8192, 8192, "fp16") > 1.5 * gpu.gemm_time(1, 8192, 8192, "fp16")


def test_preset_field_and_price_override():
    gpu = plugin.preset("GPU").customize({"preset": "h100", "price_per_hour": 1.5})
    assert gpu.name == "H100-SXM" and gpu.price_per_hour == 1.5


def test_bad_inline_field_names_the_field():
    with pytest.raises(UsageError, match="memory_gbps"):
        plugin.preset("GPU").customize({"memory_gbps": -3})
    with pytest.raises(UsageError, match="unknown device field"):
        plugin.preset("GPU").customize({"memory_gpbs": 3})
    with pytest.raises(LabsimError):
        plugin.preset("GPU").customize({"preset": "nope"})


def test_schema_describes_exactly_the_fields():
    import jsonschema

    assert CONFIG_SCHEMA["additionalProperties"] is False
    jsonschema.validate({"device_id": "g", "device_type": "GPU", "peak_tflops": {"fp16": 312},
                         "memory_gbps": 2000, "processing_units": 108}, CONFIG_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"memory_gpbs": 1}, CONFIG_SCHEMA)
    props = set(CONFIG_SCHEMA["properties"])
    assert {"peak_tflops", "memory_capacity_bytes", "memory_gbps", "processing_units", "preset",
            "profile", "price_per_hour"} <= props


def test_shipped_profile_is_default_and_datasheet_reachable():
    a100 = plugin.preset("A100-SXM4-80GB")
    assert a100.calibrated and a100.profile_info["name"] == "a100_sxm4_80gb"
    assert "aisimulate" in a100.profile_info["attribution"]
    raw = a100.datasheet_only()
    assert not raw.calibrated and raw.params != a100.params
    h100 = plugin.preset("H100-SXM")
    assert h100.calibrated and "aisimulate" in h100.profile_info["attribution"]
    assert h100.params.decode_mem_eff > a100.params.decode_mem_eff  # FA3 streams KV near HBM rate


@pytest.mark.parametrize("name", ["H100-SXM", "H100-PCIe", "H200-SXM"])
def test_hopper_presets_use_the_h100_profile_unchanged(name):
    data = plugin.shipped_profile("h100_sxm.json")
    assert data["arch"] == "hopper" and data["device"] == "H100-SXM"
    gpu = plugin.preset(name)
    assert gpu.profile_info["name"] == "h100_sxm" and "transferred_to" not in gpu.profile_info
    fitted = DATASHEET_DEFAULTS.replace(**data["params"])   # no ARCH_ADJUST factor; the share
    assert gpu.params == fitted.replace(                     # capped by the GPU's own SMs
        sm_bw_share=min(fitted.sm_bw_share, gpu.sm_bw_share_max))


@pytest.mark.parametrize("name", ["A100-SXM4-80GB", "A100-SXM4-40GB", "A100-PCIe-80GB",
                                  "RTX-A6000", "GPU"])
def test_ampere_presets_use_the_a100_profile_unchanged(name):
    data = plugin.shipped_profile("a100_sxm4_80gb.json")
    gpu = plugin.preset(name)
    assert gpu.profile_info["name"] == "a100_sxm4_80gb" and "transferred_to" not in gpu.profile_info
    assert gpu.params == DATASHEET_DEFAULTS.replace(**data["params"])


@pytest.mark.parametrize("name,arch", [("B200", "blackwell"), ("L40S", "ada"), ("L4", "ada"),
                                       ("RTX-4090", "ada"), ("V100-SXM2-32GB", "volta")])
def test_other_architectures_get_the_cross_generation_profile(name, arch):
    data = plugin.shipped_profile("cross_generation.json")
    assert arch not in data["archs"]
    gpu = plugin.preset(name)
    assert gpu.arch == arch and gpu.profile_info["name"] == "cross_generation"
    assert "transferred_to" not in gpu.profile_info  # no ARCH_ADJUST factor
    expected = DATASHEET_DEFAULTS.replace(**data["params"])
    for field in FIELDS:
        if field != "onchip_bw_ratio":
            assert getattr(gpu.params, field) == getattr(expected, field), field
    # the on-chip feed follows the GPU's own tensor peak: bytes per FLOP times FLOP/s per DRAM B/s
    peak = gpu.peak_flops.get("bf16") or gpu.peak_flops["fp16"]
    assert gpu.params.onchip_bw_ratio == pytest.approx(
        data["carried"]["onchip_bytes_per_flop"] * peak / gpu.mem_bw)


def test_one_shipped_profile_per_architecture():
    assert plugin.shipped_profiles_by_arch() == {"ampere": "a100_sxm4_80gb.json",
                                                 "hopper": "h100_sxm.json"}
