"""What a vLLM tensor-parallel step moves between its GPUs besides the layers' activations.

Read from vLLM's code (facts and file names in docs/engine_behaviour.md §5 and
"vLLM V0"); labsim prices each piece with labsim-collectives:

* **All-reduces.** Both engines use vLLM's own custom all-reduce whenever it can
  run (``CustomAllreduce.should_custom_ar``: TP 2, 4, 6 or 8, GPUs fully
  NVLink-connected beyond 2, messages under ``max_size`` = 8 MiB; in CUDA graphs
  on registered buffers, outside them after a copy into its own buffer), NCCL
  otherwise. ``disable_custom_all_reduce`` (vLLM's ``--disable-custom-all-reduce``)
  turns it off. labsim's ``vllm_custom_ar`` algorithm applies the same size limit,
  NVLink condition and vLLM's choice of kernel by size (one-shot below 512 KiB on up to 4
  GPUs, below 256 KiB on up to 8, always on 2; two-shot otherwise).
* **Logits.** The LM head is vocab-parallel: each rank holds ``rows × vocab/TP``
  logits. V0 (0.6) gathers them onto rank 0, which alone samples
  (``LogitsProcessor._get_logits`` → ``tensor_model_parallel_gather``, a
  ``torch.distributed.gather`` on NCCL); V1 all-gathers them and every rank
  samples (vllm#9856, "All processes run the sampler … an AllGather instead of a
  Gather"; ``Platform.use_all_gather`` is true under V1).
* **Inputs (V0 only).** V0's driver (TP rank 0) prepares the step's inputs and
  broadcasts them before every step, multi-step rounds included
  (``LocalOrDistributedWorkerBase.execute_model`` and
  ``MultiStepWorker._get_driver_input_and_broadcast`` → ``broadcast_tensor_dict``):
  the metadata is pickled through a shared-memory queue (CPU work, inside the
  engine's ``step_overhead_s``), then every non-empty GPU tensor goes by its own
  ``torch.distributed.broadcast`` on the NCCL group, ahead of the forward on the
  GPU stream. :data:`V0_BROADCAST` lists those tensors. V1 sends only the
  scheduler's output to its workers through shared memory, and each worker
  prepares its own inputs (vllm#9856): no GPU broadcast.

>>> sizes = v0_broadcast({"max_model_len": 4096, "block_size": 16, "num_scheduler_steps": 1})
>>> sizes(8, 8, True)            # eight decodes: tokens, positions, slots, lengths, ..., block tables
(64, 64, 64, 32, 32, 36, 36, 8192, 64)
"""

from __future__ import annotations

from labsim_llm.engine.step_cost import TpStepTraffic

#: vLLM's custom all-reduce runs on these TP sizes only (``CustomAllreduce._SUPPORTED_WORLD_SIZES``)
CUSTOM_AR_WORLD_SIZES = (2, 4, 6, 8)
#: V0's CUDA graphs cover sequences up to ``max_seq_len_to_capture`` (8192 by default, capped
#: at max_model_len; vLLM 0.6 ``ModelConfig``): the decode block tables are that wide
V0_MAX_SEQ_LEN_TO_CAPTURE = 8192

#: GPU tensors of V0's step input (vLLM 0.6, FlashAttention backend): ``(name, bytes per
#: element, per)`` with *per* ``token``, ``seq``, ``seq+1`` (one more than the sequences),
#: ``block_table`` (sequences × table width; decodes only: a prompt step without prefix caching
#: or chunking sends an empty table, which is skipped) or ``multistep`` (one per sequence on a
#: multi-step decode step). Sources: ``worker/model_runner.py`` (input_tokens, input_positions:
#: ``torch.long``), ``attention/backends/flash_attn.py`` (slot_mapping ``torch.long``;
#: seq_lens_tensor, context_lens_tensor, block_tables ``torch.int``; query_start_loc,
#: seq_start_loc ``torch.int32``), ``model_executor/sampling_metadata.py``
#: (selected_token_indices ``torch.long``), ``worker/multi_step_worker.py``
#: (last_sampled_token_ids). Empty tensors (the swap and copy lists of a step without
#: swapping) are not broadcast.
V0_BROADCAST = (
    ("input_tokens", 8, "token"),
    ("input_positions", 8, "token"),
    ("slot_mapping", 8, "token"),
    ("seq_lens_tensor", 4, "seq"),
    ("context_lens_tensor", 4, "seq"),
    ("query_start_loc", 4, "seq+1"),
    ("seq_start_loc", 4, "seq+1"),
    ("block_tables", 4, "block_table"),
    ("selected_token_indices", 8, "seq"),
    ("last_sampled_token_ids", 8, "multistep"),
)


def v0_broadcast(cfg: dict):
    """``f(tokens, rows, decode_only) → sizes``: the bytes of each tensor V0's driver
    broadcasts before a step (see :data:`V0_BROADCAST`). A CUDA-graph decode step is padded to
    its graph's size, so the pricer passes the padded token count, and decodes have one token
    each: their sequence tensors are that long too. Under multi-step scheduling every decode
    step is counted with ``last_sampled_token_ids`` (the first step of a round lacks it)."""
    width = -(-min(V0_MAX_SEQ_LEN_TO_CAPTURE, int(cfg["max_model_len"])) // int(cfg["block_size"]))
    multistep = int(cfg.get("num_scheduler_steps") or 1) > 1

    def sizes(tokens: int, rows: int, decode_only: bool) -> tuple[int, ...]:
        seqs = tokens if decode_only else rows
        counts = {"token": tokens, "seq": seqs, "seq+1": seqs + 1,
                  "block_table": seqs * width if decode_only else 0,
                  "multistep": seqs if decode_only and multistep else 0}
        return tuple(size * counts[per] for _, size, per in V0_BROADCAST if counts[per] > 0)

    return sizes


def traffic(cfg: dict) -> TpStepTraffic:
    """The TP traffic of the engine *cfg* describes (its resolved settings)."""
    tp = int(cfg["tensor_parallel_size"])
    custom = tp in CUSTOM_AR_WORLD_SIZES and not cfg.get("disable_custom_all_reduce")
    if cfg["engine_version"] == "v0":
        return TpStepTraffic("vllm_custom_ar" if custom else "auto", "gather", v0_broadcast(cfg))
    return TpStepTraffic("vllm_custom_ar" if custom else "auto", "all_gather", None)


__all__ = ["CUSTOM_AR_WORLD_SIZES", "V0_BROADCAST", "traffic", "v0_broadcast"]
