"""An H100 known only by its datasheet against the calibrated H100, end to end on vLLM.

The question a user buying a GPU labsim has never measured asks: how close does a
datasheet alone get? Here the H100 plays that GPU. Its datasheet figures are priced by the
cross-generation profile (``labsim_gpus.crossgen``) refitted **without any H100 table**
(A100, A30 and H200 tables only), and the run is compared with the same run on the
calibrated H100-SXM preset. Beside it: the shipped cross-generation profile (which did see
the H100 tables) and the A100 calibration, which priced every datasheet-only GPU before.

Traffic: the quickstart's chat mix (Llama-3.1-8B on vLLM, log-normal prompts of mean 600 and
outputs of mean 250 tokens, 30 % follow-ups), 60 s at each rate. Printed: median TPOT and
TTFT of the calibrated H100, and each datasheet pricing's relative difference from them.
Target: TPOT within 15 %. Run from the repository root::

    python benchmarks/fidelity_datasheet_serving.py
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import labsim
from labsim_gpus import crossgen
from labsim_gpus.plugin import preset
from labsim_gpus.profiles import apply_profile, shipped_profile
from ruamel.yaml import YAML

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fidelity_kernels import cross_generation_tables  # noqa: E402

RATES = (1, 4, 8, 16)
EXPERIMENT = HERE.parent / "examples" / "quickstart.yaml"


def medians(hardware: dict, rate: float) -> tuple[float, float]:
    """(TPOT p50, TTFT p50) in ms of the quickstart traffic at *rate* on *hardware*."""
    exp = copy.deepcopy(YAML(typ="safe").load(EXPERIMENT.read_text()))
    exp["workload"]["total_duration"] = 60
    exp["workload"]["client_profiles"][0]["request_rate"] = rate
    exp["hardware_profile"] = hardware
    stats = labsim.run(exp).summary["frameworks"]["vllm"]
    return stats["tpot_ms"]["p50"], stats["ttft_ms"]["p50"]


def priced(params) -> dict:
    """The H100's datasheet with every cost parameter given."""
    return {"compute_devices": [{"device_id": "gpu0", "preset": "H100-SXM",
                                 "cost_params": params.as_dict()}]}


def main() -> int:
    h100 = preset("H100-SXM")
    left_out = crossgen.fit_pooled([t for t in cross_generation_tables()
                                    if t.gpu_name != "H100-SXM"])
    pricings = {
        "cross-gen, H100 left out": crossgen.params_for(h100, left_out.params,
                                                        left_out.onchip_bytes_per_flop),
        "cross-gen, shipped": apply_profile(h100, shipped_profile(crossgen.PROFILE_FILE)).params,
        "A100 profile (before)": preset("A100-SXM4-80GB").params,
    }
    print("vLLM, Llama-3.1-8B, quickstart chat traffic on one H100: calibrated H100-SXM against\n"
          "the H100 priced from its datasheet (difference of the median, + = slower)\n")
    header = f"{'req/s':>5s} {'TPOT ms':>8s} {'TTFT ms':>8s}"
    for name in pricings:
        header += f"  {name + ' TPOT':>32s} {'TTFT':>7s}"
    print(header)
    for rate in RATES:
        tpot, ttft = medians({"device": "H100-SXM"}, rate)
        line = f"{rate:5d} {tpot:8.2f} {ttft:8.1f}"
        for params in pricings.values():
            t, f = medians(priced(params), rate)
            line += f"  {t / tpot - 1:+32.1%} {f / ttft - 1:+7.1%}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
