"""A GPU written out by its datasheet figures is priced as the catalog GPU they describe."""

from __future__ import annotations

import pytest
from labsim_gpus.match import matching_preset
from labsim_gpus.plugin import preset
from labsim_gpus.spec import customize

H100_AS_SEED_001_WRITES_IT = {
    "peak_tflops": {"bf16": 989},
    "memory_capacity_bytes": 80_000_000_000,
    "memory_gbps": 3350,
    "processing_units": 132,
}


def test_the_h100_datasheet_gets_the_h100_calibration():
    gpu = customize(preset("GPU"), H100_AS_SEED_001_WRITES_IT)
    h100 = preset("H100-SXM")
    assert gpu.name == "H100-SXM"
    assert gpu.params == h100.params
    assert gpu.describe() | {"profile": None} == h100.describe() | {"profile": None}  # same figures
    assert gpu.pricing() == {"name": "H100-SXM", "profile": "h100_sxm", "how": "matched",
                             "matched": "H100-SXM"}
    assert gpu.gemm_time(64, 4096, 4096) == pytest.approx(h100.gemm_time(64, 4096, 4096),
                                                          rel=1e-3)


@pytest.mark.parametrize("name", ["A100-SXM4-80GB", "H200-SXM", "H100-PCIe", "L40S"])
def test_every_catalog_datasheet_matches_itself(name):
    from labsim_gpus.catalog import PRESETS

    entry = next(e for e in PRESETS if e["name"] == name)
    spec = {"peak_tflops": {"fp16": entry["peak_tflops"]["fp16"]},
            "memory_gbps": entry["mem_bw_gbps"], "memory_capacity_bytes": entry["memory_gb"] * 1e9,
            "processing_units": entry["sm_count"]}
    assert matching_preset(spec)["name"] == name


@pytest.mark.parametrize("change", [
    {"memory_gbps": 3000},                   # 10 % off: another GPU
    {"processing_units": 120},
    {"memory_capacity_bytes": 96e9},
    {"peak_tflops": {"bf16": 989, "fp8": 500}},
    {"arch": "ampere"},
])
def test_other_figures_stay_datasheet_only(change):
    spec = {**H100_AS_SEED_001_WRITES_IT, **change}
    gpu = customize(preset("GPU"), spec)
    assert gpu.pricing()["how"] == "datasheet-only"
    assert gpu.name == "GPU"


def test_seed_001s_own_gpu_matches_nothing():
    # 2,000 GB/s is 2 % from the A100-SXM4-80GB (2,039) and 3 % from the PCIe card (1,935)
    spec = {"peak_tflops": {"fp16": 312, "int8": 624}, "memory_capacity_bytes": 80_000_000_000,
            "memory_gbps": 2000, "processing_units": 108}
    assert matching_preset(spec) is None


def test_written_overrides_still_apply_to_the_matched_gpu():
    gpu = customize(preset("GPU"), {**H100_AS_SEED_001_WRITES_IT, "price_per_hour": 2.1})
    assert gpu.price_per_hour == 2.1 and gpu.pricing()["how"] == "matched"


def test_a_named_profile_is_not_overridden_by_matching(tmp_path):
    gpu = customize(preset("GPU"), {"preset": "A100-SXM4-80GB", **H100_AS_SEED_001_WRITES_IT})
    assert gpu.pricing()["how"] == "catalog" and gpu.profile_info["name"] == "a100_sxm4_80gb"


def test_a_gpu_close_to_a_catalog_one_is_named_in_a_warning():
    from structlog.testing import capture_logs

    seed_001 = {"peak_tflops": {"fp16": 312, "int8": 624}, "memory_capacity_bytes": 80_000_000_000,
                "memory_gbps": 2000, "processing_units": 108}
    with capture_logs() as logs:
        gpu = customize(preset("GPU"), seed_001)
    assert gpu.pricing()["how"] == "datasheet-only"
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["catalog"] == "A100-SXM4-80GB"
    assert "preset: A100-SXM4-80GB" in warnings[0]["note"]
