"""Wall time of simulating one training iteration at scale (labsim-training).

- GPT-3 175B on 1,024 A100 (128 DGX A100): Megatron TP 8 × PP 16 × DP 8, batch 1,536 × 2,048
  tokens (target < 2 s);
- Llama-3.1-405B on 16,384 H100 (2,048 DGX H100): TP 8 × PP 16 × DP 128, 2,048 sequences of
  8,192 tokens (target < 10 s).

and a 32-point scaling study with ``labsim scale`` (target < 30 s).

    python benchmarks/speed_training.py
"""

from __future__ import annotations

import time

from labsim_training import estimate

CASES = [
    ("GPT-3-175B, 1,024 x A100, TP8 PP16 DP8", 2.0, dict(
        model="GPT-3-175B", device="A100-SXM4-80GB", topology={"type": "dgx-a100", "nodes": 128},
        seq_len=2048, global_batch_size=1536,
        config={"tensor_parallel": 8, "pipeline_parallel": 16, "micro_batch_size": 1, "recompute": "selective",
                "sequence_parallel": True, "distributed_optimizer": True, "overlap_grad_reduce": True,
                "precision": "bf16"})),
    ("Llama-3.1-405B, 16,384 x H100, TP8 PP16 DP128", 10.0, dict(
        model="Llama-3.1-405B", device="H100-SXM", topology={"type": "dgx-h100", "nodes": 2048},
        seq_len=8192, global_batch_size=2048,
        config={"tensor_parallel": 8, "pipeline_parallel": 16, "micro_batch_size": 1, "recompute": "full",
                "sequence_parallel": True, "distributed_optimizer": True, "overlap_grad_reduce": True,
                "decoder_first_pipeline_num_layers": 7, "decoder_last_pipeline_num_layers": 7,
                "precision": "bf16"})),
    ("Llama-3.1-405B, 16,384 x H100, TP8 PP16 (x8 virtual) DP128", 10.0, dict(
        model="Llama-3.1-405B", device="H100-SXM", topology={"type": "dgx-h100", "nodes": 2048},
        seq_len=8192, global_batch_size=2048,
        config={"tensor_parallel": 8, "pipeline_parallel": 16, "virtual_pipeline_stages": 8,
                "decoder_first_pipeline_num_layers": 0, "decoder_last_pipeline_num_layers": 0,
                "micro_batch_size": 1, "recompute": "full", "sequence_parallel": True,
                "distributed_optimizer": True, "overlap_grad_reduce": True, "precision": "bf16"})),
]


def scaling_study() -> None:
    """A 32-point strong-scaling study (8 to 256 GPUs) of the medium preset, 3 frameworks each."""
    from click.testing import CliRunner
    from labsim.cli import cli

    path = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "training_medium_32gpu.yaml")
    began = time.perf_counter()
    result = CliRunner().invoke(cli, ["scale", path, "--gpus", *[str(8 * i) for i in range(1, 33)]])
    wall = time.perf_counter() - began
    assert result.exit_code == 0, result.output
    print(f"labsim scale, 32 sizes x 3 frameworks (GPT-2 XL, 8-256 A100): {wall:.1f} s wall (target < 30 s)")


def main() -> None:
    for label, target, kw in CASES:
        model = kw.pop("model")
        began = time.perf_counter()
        r = estimate(model, framework="megatron", **kw)
        wall = time.perf_counter() - began
        print(f"{label}: {wall:.2f} s wall (target < {target:.0f} s); iteration {r['iteration_time_s']:.2f} s, "
              f"MFU {r['mfu']:.3f}, {r['memory_per_gpu_gib']['total']:.1f} GiB/GPU, "
              f"bottleneck {r['bottleneck']['kind']}")
    scaling_study()


if __name__ == "__main__":
    main()
