"""Which attention kernel vLLM runs on a GPU, for the step pricer.

vLLM v1's FlashAttention backend picks the FlashAttention version by the GPU's compute
capability (``get_flash_attn_version`` in ``vllm/v1/attention/backends/fa_utils.py``):
FlashAttention-3 on Hopper (SM90), FlashAttention-2 on Ampere and Ada (SM80-89); Blackwell
runs FlashInfer or FlashAttention-4. FA2's decode runs kernels of its own around the attention
kernel — the layout copies of a grouped-query batch and the combine of a split context
(:func:`labsim_gpus.kernels.decode_side_seconds`).

Where those kernels are priced depends on what the device's profile was fitted on:

* the cross-generation profile (GPUs of an architecture without a calibration of its own, Ada
  among them) and the datasheet model price the attention kernel alone — the cross-generation
  fit takes FA2's kernels out of the A100 vLLM rows (``crossgen.Table.decode_kernel``) — so
  the pricer gets the device with FA2's flags set (``kernels.DECODE_KERNELS``);
* a calibrated profile prices the kernels it was fitted on, their own extras included: the
  A100 profile's decode was fitted on SGLang's FlashAttention rows, whose fixed costs already
  hold what FA2 adds (priced again on top, the A100 vLLM decode rows would go from 19.8 % to
  32.3 % median error, ``benchmarks/fidelity_kernels.py``), so it is left as it is.

Not for ``engine_version: v0``: vLLM 0.6 runs FA2 everywhere, but through
``flash_attn_with_kvcache``, which takes the swapped query as a strided view; Vidur's A100 rows
of that path show the split's combine and no copy step (``kernels.DECODE_KERNELS``
``flash-attention-2-kvcache``). V0 is not yet priced with it.

>>> from labsim_gpus.plugin import preset
>>> attention_device(preset("L4"), {"engine_version": "v1"}).params.decode_gqa_copies
2.0
>>> attention_device(preset("H100-SXM"), {"engine_version": "v1"}).params.decode_gqa_copies
0.0
"""

from __future__ import annotations

from labsim_gpus.kernels import DECODE_KERNELS

#: GPU architectures on which vLLM v1 runs FlashAttention-2 (``fa_utils.get_flash_attn_version``)
FA2_ARCHS = ("ampere", "ada")
#: profiles that price the attention kernel alone (None: the datasheet model)
BARE_KERNEL_PROFILES = (None, "cross_generation")


def attention_device(device, cfg: dict):
    """*device* as vLLM's attention kernel on it prices decode: with FA2's own kernels on the
    architectures of :data:`FA2_ARCHS` when its profile prices the bare kernel
    (:data:`BARE_KERNEL_PROFILES`; a labsim-gpus GPU; any other device as it is)."""
    params = getattr(device, "params", None)
    profile = (getattr(device, "profile_info", None) or {}).get("name")
    if (cfg.get("engine_version") != "v1" or getattr(device, "arch", "") not in FA2_ARCHS
            or profile not in BARE_KERNEL_PROFILES or params is None
            or not hasattr(params, "decode_gqa_copies") or not hasattr(device, "copy")):
        return device
    return device.copy(params=params.replace(**DECODE_KERNELS["flash-attention-2"]))


__all__ = ["BARE_KERNEL_PROFILES", "FA2_ARCHS", "attention_device"]
