"""Memory accounting: bytes of weights, KV cache and activations per device, and what fits.

>>> from labsim_gpus.memory import weight_bytes, kv_cache_bytes_per_token, fits
>>> weight_bytes(8e9, "bf16")
16000000000.0
>>> kv_cache_bytes_per_token(32, 8, 128, "bf16")        # Llama-3-8B: 128 KiB per token
131072
>>> fits(80e9, weights=16e9, kv_cache=50e9)             # None: it fits
>>> fits(24e9, weights=16e9, kv_cache=10e9)[:40]
'needs 26.0 GB but the device holds 24.0 G'
"""

from __future__ import annotations

from labsim.errors import UsageError

from labsim_gpus.dtypes import DTYPE_BYTES, nbytes

__all__ = ["DTYPE_BYTES", "weight_bytes", "kv_cache_bytes_per_token", "kv_cache_bytes",
           "activation_bytes", "fits", "max_kv_tokens"]


def weight_bytes(num_params: float, dtype: str = "bf16", tp: int = 1, pp: int = 1) -> float:
    """Bytes of *num_params* weights in *dtype*, sharded over ``tp x pp`` devices."""
    if num_params < 0 or tp < 1 or pp < 1:
        raise UsageError("num_params must be ≥ 0 and tp, pp ≥ 1")
    return float(num_params) * nbytes(dtype) / (tp * pp)


def kv_cache_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int,
                             kv_dtype: str = "bf16", tp: int = 1) -> int:
    """KV-cache bytes per token: K and V for every layer and KV head (per device under *tp*).

    With ``tp > num_kv_heads`` the KV heads are replicated, so each device keeps one.
    """
    if min(num_layers, num_kv_heads, head_dim, tp) < 1:
        raise UsageError("num_layers, num_kv_heads, head_dim and tp must be ≥ 1")
    heads = max(1, -(-num_kv_heads // tp))
    return int(2 * num_layers * heads * head_dim * nbytes(kv_dtype, "kv_dtype"))


def kv_cache_bytes(tokens: int, num_layers: int, num_kv_heads: int, head_dim: int,
                   kv_dtype: str = "bf16", tp: int = 1, block_size: int = 1) -> int:
    """KV-cache bytes of *tokens* cached tokens, rounded up to whole *block_size* pages."""
    pages = -(-int(tokens) // block_size) * block_size
    return pages * kv_cache_bytes_per_token(num_layers, num_kv_heads, head_dim, kv_dtype, tp)


def activation_bytes(tokens: int, hidden: int, intermediate: int, dtype: str = "bf16",
                     tp: int = 1) -> float:
    """Peak transient activation bytes of one transformer layer's forward pass for *tokens*
    (inference: the widest live tensors are the MLP's gate/up outputs plus the residual)."""
    b = nbytes(dtype)
    return float(tokens) * (2 * hidden + 2 * intermediate / tp) * b


def fits(memory_bytes: float, *, weights: float = 0.0, kv_cache: float = 0.0,
         activations: float = 0.0, reserved_fraction: float = 0.0) -> str | None:
    """None when the parts fit in *memory_bytes*; otherwise a sentence saying why not.

    :param reserved_fraction: share of memory kept back (CUDA context, allocator slack;
        serving engines use e.g. ``1 - gpu_memory_utilization``).
    """
    usable = memory_bytes * (1.0 - reserved_fraction)
    need = weights + kv_cache + activations
    if need <= usable:
        return None
    parts = ", ".join(f"{name} {value / 1e9:.1f} GB" for name, value in
                      (("weights", weights), ("KV cache", kv_cache), ("activations", activations))
                      if value)
    return (f"needs {need / 1e9:.1f} GB but the device holds {usable / 1e9:.1f} GB usable "
            f"({parts})")


def max_kv_tokens(memory_bytes: float, bytes_per_token: float, *, weights: float = 0.0,
                  activations: float = 0.0, reserved_fraction: float = 0.0) -> int:
    """How many tokens of KV cache fit beside the weights and activations (0 if none)."""
    free = memory_bytes * (1.0 - reserved_fraction) - weights - activations
    return max(0, int(free // bytes_per_token))
