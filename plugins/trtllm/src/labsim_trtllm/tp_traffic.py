"""What a TensorRT-LLM tensor-parallel step moves between its GPUs besides the layers' activations.

TensorRT-LLM 1.x with the PyTorch backend, read from its source (docs/engine_behaviour.md,
TensorRT-LLM "All-reduce"); labsim prices each piece with labsim-collectives:

* **All-reduces.** ``allreduce_strategy: AUTO`` (the default of ``TorchLlmArgs``) takes each
  all-reduce's strategy from a table of the strategies measured fastest, keyed by SM
  architecture, TP size, the fused operation, hidden size and token count, on SM90 (Hopper)
  and SM100 (Blackwell); outside the table, and on every other GPU, NCCL (TensorRT-LLM PR
  #7870, in 1.1; 1.0 used a rule instead: its own kernels at TP 2, or up to 128 tokens, NCCL
  above). labsim prices an AUTO all-reduce on a Hopper or Blackwell GPU as the cheaper of its
  one-/two-shot custom kernel (``custom_ar``, NVLink only, up to 8 MiB) and NCCL, and as NCCL on
  other GPUs. ``allreduce_strategy: NCCL`` forces NCCL everywhere.
* **Logits.** The LM head is column-parallel with ``gather_output=True``
  (``DecoderModelForCausalLM`` in ``_torch/models/modeling_utils.py``): each rank computes
  ``rows × vocab/TP`` logits, and they are all-gathered, in the model's dtype, to every rank.
* **Inputs.** Every rank runs its own executor loop; new requests reach the ranks from rank 0
  through MPI on the host, which is CPU work (inside ``step_overhead_s``), so no GPU tensors are
  broadcast before a step.
* **The norms after the all-reduces.** The Llama-style decoder layer asks each of its two
  all-reduces for the residual add + RMSNorm that follows (``AllReduceFusionOp.RESIDUAL_RMS_NORM``).
  The one-/two-shot kernels do it inside the all-reduce (``thop/allreduceOp.cpp``,
  ``runFusionAllReduce``: one ``allreduce_fusion_op`` kernel, pattern ``kARResidualRMSNorm``);
  after NCCL it runs as a kernel of its own (``fallbackRunSubsequentOps`` →
  ``residualRmsNorm``). Where AUTO's table applies, labsim prices each all-reduce and its norm
  as the cheaper of the fused kernel (the norm's DRAM traffic, no launch of its own) and NCCL
  plus the norm (``TpStepTraffic.fused_norm``); elsewhere the norms stay kernels of their own.
  The launch count of an eager step still counts them.

>>> traffic({"allreduce_strategy": "AUTO"}, "hopper")
TpStepTraffic(all_reduce='best', logits='all_gather', broadcast=None, fused_norm=True)
>>> traffic({"allreduce_strategy": "AUTO"}, "ampere").all_reduce
'auto'
"""

from __future__ import annotations

from labsim_llm.engine.step_cost import TpStepTraffic

#: architectures for which TensorRT-LLM's AUTO table holds measured strategies (SM90, SM100)
TABLE_ARCHES = ("hopper", "blackwell")


def traffic(cfg: dict, arch: str) -> TpStepTraffic:
    """The TP traffic of a TensorRT-LLM engine with settings *cfg* on a GPU of architecture *arch*."""
    auto_table = cfg.get("allreduce_strategy", "AUTO") == "AUTO" and arch in TABLE_ARCHES
    return TpStepTraffic("best" if auto_table else "auto", "all_gather", None, fused_norm=auto_table)
