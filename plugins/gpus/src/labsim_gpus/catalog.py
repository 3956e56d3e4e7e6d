"""The device catalog: datasheet figures of every preset, each with its source.

Figures come from the vendor datasheets collected in ``data/gpu_datasheets.csv``
(a copy of the project's shared table; its ``source`` column names the
document behind each row). Peaks are **dense** tensor-core throughput
(sparsity doubles the marketing numbers; we never use those). NVLink and host
link figures are stored per direction (the datasheets quote bidirectional
totals, which we halve). SM counts are not in the datasheets; each cites the
architecture whitepaper it comes from.

Prices per GPU-hour are an **assumption**: approximate 2024-25 on-demand list
prices at GPU-specialist clouds (Lambda, RunPod, CoreWeave price pages);
hyperscalers charge 2-4x more, reserved capacity less. Override them with
``price_per_hour`` in the experiment file.
"""

from __future__ import annotations

DATASHEET = "NVIDIA datasheet, via data/gpu_datasheets.csv"

#: Bytes of device memory a program sees per datasheet "GB". DRAM is built in binary sizes
#: (an 80 GB H100 carries five 16 GiB HBM3 stacks), and the CUDA driver keeps about 1 % for
#: itself: torch.cuda.get_device_properties(0).total_memory reports 79.19 GiB on an H100-SXM
#: 80GB and 79.3 GiB on an A100-SXM4-80GB (as printed in vLLM's start-up logs; figures from
#: memory of such logs, not re-measured here — no GPU was lent to this task).
MEMORY_GB_BYTES = 2**30 * 0.99

#: DRAM bandwidth one Hopper SM can draw, GB/s: the most one SM drew on an H200 (a streaming-read
#: kernel, 1024 threads x 16 independent 16-byte loads in flight, on 1 to 132 SMs; all 132 SMs drew
#: 4.14 TB/s): benchmarks/data/h200_torch/sm_bandwidth_h200_torch.csv, made by
#: benchmarks/measure_sm_bandwidth.py. One SM is limited by its loads in flight over the DRAM
#: latency (Little's law), a property of the SM and the memory's latency rather than of the GPU's
#: total bandwidth, so the figure carries to every GH100 part (same SM) and bounds the cost model's
#: ``sm_bw_share`` per device: ``sm_dram_gbps x sm_count / mem_bw_gbps`` (H200 3.4, H100-SXM 4.9).
HOPPER_SM_DRAM_GBPS = 124.0
#: Ampere: **not measured**. Hopper's figure is taken as a loose upper bound (A100-SXM4-80GB:
#: share <= 6.6): an Ampere SM has no more loads in flight than a Hopper SM (the same 64 K 32-bit
#: registers per SM, at most 2,048 threads per SM on GA100 and 1,536 on GA102, in the
#: whitepapers) and a smaller L1 (192 / 128 against 256 KB) at a lower clock (A100: 1,410 MHz
#: boost, A100 whitepaper), so it should draw no more. A loose bound rather than none: left
#: unbounded, a fit could run the share to unphysical values as Hopper fits did (91-187: one SM
#: drawing most of the GPU), and the cross-generation fit carries the share to other GPUs.
AMPERE_SM_DRAM_GBPS = HOPPER_SM_DRAM_GBPS

#: One dict per preset. Units: memory_gb (the datasheet's GB, which for DRAM is GiB: see
#: MEMORY_GB_BYTES),  mem_bw_gbps (GB/s), peak_tflops
#: (dense TFLOP/s or TOP/s), nvlink/host link GB/s per direction, tdp_w (W), price (USD/h),
#: sm_dram_gbps (DRAM GB/s one SM can draw; absent where not known: no bound).
PRESETS: list[dict] = [
    {
        "name": "V100-SXM2-32GB", "arch": "volta",
        "aliases": ("v100", "V100-SXM2", "v100-32gb", "V100-SXM2-32G"),
        "description": "NVIDIA Tesla V100 SXM2 32 GB (Volta): fp16 tensor cores, no bf16/tf32/fp8",
        # V100 datasheet: 15.7 FP32, 125 FP16 tensor; bf16/tf32/fp8 do not exist on Volta, and
        # int8 runs only through DP4A (not a tensor-core rate), so int8 is left unsupported.
        "peak_tflops": {"fp32": 15.7, "fp16": 125.0},
        "memory_gb": 32, "mem_bw_gbps": 900,          # V100 datasheet: 32 GB HBM2, 900 GB/s
        "sm_count": 80,                                # Volta whitepaper (WP-08608), Table 1: 80 SMs
        "nvlink_gbps": 150,                            # datasheet 300 GB/s bidirectional (NVLink2)
        "host_link_gbps": 16,                          # PCIe Gen3 x16: 32 GB/s bidirectional
        "tdp_w": 300,                                  # datasheet
        "price_per_hour": 0.90,                        # assumption (see module docstring)
    },
    {
        "name": "A100-SXM4-40GB", "arch": "ampere",
        "aliases": ("a100-40gb", "A100-SXM-40GB", "a100-sxm4-40g", "A100-40G"),
        "description": "NVIDIA A100 SXM4 40 GB (Ampere), NVLink3",
        # A100 datasheet: 19.5 FP32, 156 TF32, 312 BF16/FP16, 624 INT8 (dense); no FP8.
        "peak_tflops": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        "memory_gb": 40, "mem_bw_gbps": 1555,          # datasheet: 40 GB HBM2, 1,555 GB/s
        "sm_count": 108,                               # A100 whitepaper, Table 3: 108 SMs
        "sm_dram_gbps": AMPERE_SM_DRAM_GBPS,     # not measured: a loose bound (see there)
        "nvlink_gbps": 300,                            # datasheet 600 GB/s bidirectional
        "host_link_gbps": 32,                          # PCIe Gen4 x16: 64 GB/s bidirectional
        "tdp_w": 400,                                  # datasheet
        "price_per_hour": 1.30,                        # assumption (see module docstring)
    },
    {
        "name": "A100-SXM4-80GB", "arch": "ampere",
        "aliases": ("a100", "a100-80gb", "A100-SXM", "a100-sxm", "a100-sxm4", "A100-SXM-80GB",
                    "a100_sxm", "A100-80G"),
        "description": "NVIDIA A100 SXM4 80 GB (Ampere), NVLink3",
        "peak_tflops": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        "memory_gb": 80, "mem_bw_gbps": 2039,          # datasheet: 80 GB HBM2e, 2,039 GB/s
        "sm_count": 108,                               # A100 whitepaper, Table 3
        "sm_dram_gbps": AMPERE_SM_DRAM_GBPS,     # not measured: a loose bound (see there)
        "nvlink_gbps": 300,                            # datasheet 600 GB/s bidirectional
        "host_link_gbps": 32,                          # PCIe Gen4 x16
        "tdp_w": 400,                                  # datasheet
        "price_per_hour": 1.80,                        # assumption (see module docstring)
        "profile": "a100_sxm4_80gb.json",              # shipped calibration (data/profiles)
    },
    {
        "name": "A100-PCIe-40GB", "arch": "ampere",
        "aliases": ("a100-pcie-40g", "A100-PCIE-40G"),
        "description": "NVIDIA A100 PCIe 40 GB (Ampere), NVLink bridge pairs",
        "peak_tflops": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        "memory_gb": 40, "mem_bw_gbps": 1555,          # datasheet (original 2020 PCIe 40 GB)
        "sm_count": 108,                               # A100 whitepaper, Table 3
        "sm_dram_gbps": AMPERE_SM_DRAM_GBPS,     # not measured: a loose bound (see there)
        "nvlink_gbps": 300,                            # NVLink3 bridge, 600 GB/s bidir, pairs only
        "host_link_gbps": 32,                          # PCIe Gen4 x16
        "tdp_w": 250,                                  # datasheet
        "price_per_hour": 1.20,                        # assumption (see module docstring)
    },
    {
        "name": "A100-PCIe-80GB", "arch": "ampere",
        "aliases": ("a100-pcie", "a100-pcie-80g", "A100-PCIE-80G"),
        "description": "NVIDIA A100 PCIe 80 GB (Ampere), NVLink bridge pairs",
        "peak_tflops": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        "memory_gb": 80, "mem_bw_gbps": 1935,          # datasheet: 80 GB HBM2e, 1,935 GB/s
        "sm_count": 108,                               # A100 whitepaper, Table 3
        "sm_dram_gbps": AMPERE_SM_DRAM_GBPS,     # not measured: a loose bound (see there)
        "nvlink_gbps": 300,                            # NVLink3 bridge, pairs only
        "host_link_gbps": 32,                          # PCIe Gen4 x16
        "tdp_w": 300,                                  # datasheet
        "price_per_hour": 1.60,                        # assumption (see module docstring)
    },
    {
        "name": "H100-SXM", "arch": "hopper",
        "aliases": ("h100", "H100-SXM5-80GB", "h100-sxm5", "h100-80gb", "h100_sxm", "H100-SXM-80GB"),
        "description": "NVIDIA H100 SXM5 80 GB (Hopper), NVLink4",
        # H100 datasheet / whitepaper: 66.9 FP32, 494.7 TF32, 989.4 BF16, 1978.9 FP8/INT8 dense.
        "peak_tflops": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4,
                        "fp8": 1978.9, "int8": 1978.9},
        "memory_gb": 80, "mem_bw_gbps": 3350,          # datasheet: 80 GB HBM3, 3.35 TB/s
        "sm_count": 132,                               # H100 whitepaper, Table 3: SXM5 132 SMs
        "sm_dram_gbps": HOPPER_SM_DRAM_GBPS,     # measured on an H200 (see there)
        "nvlink_gbps": 450,                            # datasheet 900 GB/s bidirectional
        "host_link_gbps": 64,                          # PCIe Gen5 x16: 128 GB/s bidirectional
        "tdp_w": 700,                                  # datasheet
        "price_per_hour": 3.00,                        # assumption (see module docstring)
    },
    {
        "name": "H100-PCIe", "arch": "hopper",
        "aliases": ("h100-pcie-80gb", "H100-PCIe-80GB", "h100-pcie5"),
        "description": "NVIDIA H100 PCIe 80 GB (Hopper), NVLink bridge pairs",
        # H100 PCIe product brief PB-11133-001: 51.2 FP32, 378 TF32, 756 BF16, 1513 FP8/INT8.
        "peak_tflops": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0,
                        "fp8": 1513.0, "int8": 1513.0},
        "memory_gb": 80, "mem_bw_gbps": 2000,          # product brief: 80 GB HBM2e, 2.0 TB/s
        "sm_count": 114,                               # H100 whitepaper, Table 3: PCIe 114 SMs
        "sm_dram_gbps": HOPPER_SM_DRAM_GBPS,     # measured on an H200 (see there)
        "nvlink_gbps": 300,                            # NVLink4 bridge 600 GB/s bidir, pairs
        "host_link_gbps": 64,                          # PCIe Gen5 x16
        "tdp_w": 350,                                  # product brief (300-350 W configurable)
        "price_per_hour": 2.50,                        # assumption (see module docstring)
    },
    {
        "name": "H200-SXM", "arch": "hopper",
        "aliases": ("h200", "H200-SXM-141GB", "h200-141gb", "h200_sxm"),
        "description": "NVIDIA H200 SXM 141 GB (Hopper, HBM3e), NVLink4",
        "peak_tflops": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4,
                        "fp8": 1978.9, "int8": 1978.9},   # H200 datasheet: same compute as H100
        "memory_gb": 141, "mem_bw_gbps": 4800,         # datasheet: 141 GB HBM3e, 4.8 TB/s
        "sm_count": 132,                               # same GH100 configuration as H100 SXM5
        "sm_dram_gbps": HOPPER_SM_DRAM_GBPS,     # measured on an H200 (see there)
        "nvlink_gbps": 450,                            # datasheet 900 GB/s bidirectional
        "host_link_gbps": 64,                          # PCIe Gen5 x16
        "tdp_w": 700,                                  # datasheet (up to 700 W)
        "price_per_hour": 3.80,                        # assumption (see module docstring)
    },
    {
        "name": "B200", "arch": "blackwell",
        "aliases": ("b200-sxm", "HGX-B200", "b200-180gb"),
        "description": "NVIDIA B200 (HGX, per GPU; Blackwell), NVLink5",
        # HGX B200 datasheet per GPU (= HGX/8): 80 FP32, 1100 TF32, 2250 BF16, 4500 FP8/INT8,
        # 9000 FP4 dense; medium confidence on FP32 (see the csv notes).
        "peak_tflops": {"fp32": 80.0, "tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0,
                        "fp8": 4500.0, "int8": 4500.0, "fp4": 9000.0},
        "memory_gb": 180, "mem_bw_gbps": 8000,         # HGX B200: 180 GB usable, 8 TB/s
        # Assumption: 148 SMs (2 dies x 74) as reported in public architecture analyses; the
        # datasheet does not give an SM count. Medium confidence.
        "sm_count": 148,
        "nvlink_gbps": 900,                            # NVLink5: 1.8 TB/s bidirectional
        "host_link_gbps": 64,                          # PCIe Gen5 x16
        "tdp_w": 1000,                                 # HGX B200 datasheet
        "price_per_hour": 5.00,                        # assumption (see module docstring)
    },
    {
        "name": "L4", "arch": "ada",
        "aliases": ("nvidia-l4", "l4-24gb"),
        "description": "NVIDIA L4 24 GB (Ada, low-profile PCIe), no NVLink",
        # L4 datasheet values are sparse (120/242/485/485); dense = half.
        "peak_tflops": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0,
                        "fp8": 242.5, "int8": 242.5},
        "memory_gb": 24, "mem_bw_gbps": 300,           # datasheet: 24 GB GDDR6, 300 GB/s
        "sm_count": 58,                                # Ada whitepaper: L4 (AD104) 58 SMs
        "nvlink_gbps": 0,                              # no NVLink
        "host_link_gbps": 32,                          # PCIe Gen4 x16
        "tdp_w": 72,                                   # datasheet
        "price_per_hour": 0.70,                        # assumption (see module docstring)
    },
    {
        "name": "L40S", "arch": "ada",
        "aliases": ("l40s-48gb", "nvidia-l40s"),
        "description": "NVIDIA L40S 48 GB (Ada, PCIe), no NVLink",
        # L40S datasheet sparse TF32 366 / BF16 733 / FP8 1466; dense = half.
        "peak_tflops": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05,
                        "fp8": 733.0, "int8": 733.0},
        "memory_gb": 48, "mem_bw_gbps": 864,           # datasheet: 48 GB GDDR6, 864 GB/s
        "sm_count": 142,                               # L40S product brief: AD102, 142 SMs
        "nvlink_gbps": 0,                              # no NVLink
        "host_link_gbps": 32,                          # PCIe Gen4 x16
        "tdp_w": 350,                                  # datasheet
        "price_per_hour": 1.00,                        # assumption (see module docstring)
    },
    {
        "name": "RTX-A6000", "arch": "ampere",
        "aliases": ("a6000", "rtx-a6000-48gb", "RTX A6000"),
        "description": "NVIDIA RTX A6000 48 GB (Ampere GA102, workstation PCIe)",
        # Datasheet 309.7 TFLOPS is sparse FP16 tensor; dense halves it (csv notes). GA102 has no
        # BF16 rate penalty for the pro card (FP32 accumulate at full rate).
        "peak_tflops": {"fp32": 38.7, "tf32": 77.4, "bf16": 154.8, "fp16": 154.8, "int8": 309.7},
        "memory_gb": 48, "mem_bw_gbps": 768,           # datasheet: 48 GB GDDR6, 768 GB/s
        "sm_count": 84,                                # Ampere GA102 whitepaper: full GA102, 84 SMs
        "sm_dram_gbps": AMPERE_SM_DRAM_GBPS,     # not measured: a loose bound (see there)
        "nvlink_gbps": 56.25,                          # NVLink3 bridge 112.5 GB/s bidir, pairs
        "host_link_gbps": 32,                          # PCIe Gen4 x16
        "tdp_w": 300,                                  # datasheet
        "price_per_hour": 0.80,                        # assumption (see module docstring)
    },
    {
        "name": "RTX-4090", "arch": "ada",
        "aliases": ("4090", "rtx4090", "geforce-rtx-4090"),
        "description": "NVIDIA GeForce RTX 4090 24 GB (Ada AD102, consumer PCIe)",
        # Ada whitepaper Appendix A (RTX 4090): 82.6 FP32; 165.2 BF16/FP16 with FP32 accumulate;
        # 330.3 FP8 (FP32 accumulate); 660.6 INT8 dense. TF32 82.6 dense.
        "peak_tflops": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2,
                        "fp8": 330.3, "int8": 660.6},
        "memory_gb": 24, "mem_bw_gbps": 1008,          # whitepaper: 24 GB GDDR6X, 1,008 GB/s
        "sm_count": 128,                               # Ada whitepaper Appendix A: 128 SMs
        "nvlink_gbps": 0,                              # no NVLink
        "host_link_gbps": 32,                          # PCIe Gen4 x16
        "tdp_w": 450,                                  # whitepaper
        "price_per_hour": 0.40,                        # assumption (see module docstring)
    },
]

#: The generic template used by devices written out inline (``device_type: GPU``). Fields the
#: experiment does not give take A100-SXM4-80GB datasheet values (the calibrated reference).
GENERIC = {
    **{k: v for k, v in PRESETS[2].items() if k not in ("profile",)},
    "name": "GPU", "arch": "ampere", "aliases": ("generic", "generic-gpu"),
    "description": "A GPU described inline (seed-style compute_devices); unset fields default "
                   "to A100-SXM4-80GB datasheet values; figures matching no catalog GPU are "
                   "priced by the profile of their arch, else the cross-generation profile",
}
