"""The GPU device: datasheet figures plus the calibrated roofline, as a :class:`labsim.Device`.

>>> import labsim
>>> a100 = labsim.device("a100")                                 # doctest: +SKIP
>>> a100.gemm_time(4096, 4096, 4096, dtype="bf16")                # seconds  # doctest: +SKIP
>>> a100.attention_time("decode", batch_size=8, seq_len=2048, num_heads=32,
...                     num_kv_heads=8, head_dim=128)             # doctest: +SKIP
>>> a100.customize({"memory_gbps": 1555, "price_per_hour": 1.1})  # doctest: +SKIP

Every cost method returns seconds, validates its arguments (a bad shape or an
unsupported precision is a :class:`labsim.UsageError` naming the argument),
and is cheap: scalar calls are plain float arithmetic, GEMMs are memoised.
"""

from __future__ import annotations

import functools
import math
import numbers
from pathlib import Path
from typing import Any

import labsim
import numpy as np
from labsim.errors import UsageError

from labsim_gpus import kernels
from labsim_gpus.dtypes import COMPUTE_DTYPES, DTYPE_BYTES, canonical
from labsim_gpus.params import DATASHEET_DEFAULTS, CostParams

GB = 1e9
TERA = 1e12
MEMCPY_KINDS = ("d2d", "h2d", "d2h")


def _positive_int(value: Any, field: str, minimum: int = 1) -> int:
    if type(value) is int and value >= minimum:
        return value            # (the usual case, without the checks of numbers.Real's ABC)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value):
        raise UsageError(f"{field} must be a whole number, got {value!r}")
    if value < minimum:
        raise UsageError(f"{field} must be ≥ {minimum}, got {value!r}")
    return int(value)


class GPU(labsim.Device):
    """A GPU priced by a shape-aware roofline whose efficiencies come from calibration.

    :param name: canonical name (``H100-SXM``).
    :param peak_flops: dense FLOP/s by canonical precision; a precision absent here is
        unsupported on this device.
    :param memory_bytes: device memory in bytes.
    :param mem_bw: DRAM bandwidth in bytes/s.
    :param sm_count: streaming multiprocessors.
    :param nvlink_bw: NVLink bandwidth in bytes/s per direction (0 without NVLink).
    :param host_link_bw: host link (PCIe) bandwidth in bytes/s per direction.
    :param sm_dram_bw: DRAM bandwidth in bytes/s one SM can draw (None: not known); it bounds
        the fitted ``sm_bw_share`` (:attr:`sm_bw_share_max`).
    :param params: the cost model's efficiencies and overheads.
    :param datasheet_params: the parameters of the datasheet-only model.
    :param profile_info: where *params* came from (a profile's name, attribution, arch).
    """

    def __init__(self, name: str, *, peak_flops: dict[str, float], memory_bytes: int,
                 mem_bw: float, sm_count: int, nvlink_bw: float = 0.0,
                 host_link_bw: float = 32 * GB, sm_dram_bw: float | None = None,
                 tdp_w: float = 0.0, price_per_hour: float = 0.0,
                 arch: str = "", aliases: tuple[str, ...] = (), description: str = "",
                 params: CostParams = DATASHEET_DEFAULTS,
                 datasheet_params: CostParams = DATASHEET_DEFAULTS,
                 profile_info: dict | None = None):
        self.name = name
        self.aliases = tuple(aliases)
        self.description = description
        self.arch = arch
        self.peak_flops = {canonical(k): float(v) for k, v in peak_flops.items() if v}
        self.memory_bytes = int(memory_bytes)
        self.mem_bw = float(mem_bw)
        self.sm_count = int(sm_count)
        self.nvlink_bw = float(nvlink_bw)
        self.host_link_bw = float(host_link_bw)
        self.sm_dram_bw = float(sm_dram_bw) if sm_dram_bw else None
        self.tdp_w = float(tdp_w)
        self.price_per_hour = float(price_per_hour)
        self.params = params
        self.datasheet_params = datasheet_params
        self.profile_info = dict(profile_info or {})
        self._gemm_cache = functools.lru_cache(maxsize=65536)(self._gemm_uncached)
        #: a GEMM's (peak FLOP/s, input bytes, output bytes) by the precision's name as given
        #: (worked out once each: prompts of varied lengths miss the GEMM cache often)
        self._gemm_terms: dict[str, tuple[float, float, float]] = {}

    # -- facts -----------------------------------------------------------------------------

    @property
    def launch_overhead(self) -> float:
        """Seconds of fixed cost per kernel (launch, ramp-up, tail)."""
        return self.params.kernel_overhead_s

    @property
    def sm_bw_share_max(self) -> float:
        """The most ``sm_bw_share`` (times its fair share ``mem_bw / sm_count``) one SM of this
        device can draw: ``sm_dram_bw · sm_count / mem_bw``; infinite when the per-SM draw is
        not known. Calibration fits never go above it."""
        if not self.sm_dram_bw:
            return math.inf
        return self.sm_dram_bw * self.sm_count / self.mem_bw

    @property
    def calibrated(self) -> bool:
        """True when the cost parameters come from a calibration profile."""
        return bool(self.profile_info)

    def supports(self, dtype: str) -> bool:
        """True when this device has a dense tensor/ALU rate for *dtype*."""
        try:
            return canonical(dtype) in self.peak_flops
        except UsageError:
            return False

    def _peak(self, dtype: str, field: str = "dtype") -> float:
        key = canonical(dtype, field)
        peak = self.peak_flops.get(key)
        if peak is None:
            supported = ", ".join(d for d in COMPUTE_DTYPES if d in self.peak_flops)
            raise UsageError(f"{field} {dtype!r} is not supported on {self.name}; "
                             f"supported: {supported}")
        return peak

    def __repr__(self) -> str:
        source = self.profile_info.get("name", "datasheet only")
        return f"<GPU {self.name} ({source})>"

    # -- variants --------------------------------------------------------------------------

    def copy(self, **changes) -> GPU:
        """A copy with constructor fields replaced by *changes*."""
        fields = dict(name=self.name, peak_flops=self.peak_flops, memory_bytes=self.memory_bytes,
                      mem_bw=self.mem_bw, sm_count=self.sm_count, nvlink_bw=self.nvlink_bw,
                      host_link_bw=self.host_link_bw, sm_dram_bw=self.sm_dram_bw, tdp_w=self.tdp_w,
                      price_per_hour=self.price_per_hour, arch=self.arch, aliases=self.aliases,
                      description=self.description, params=self.params,
                      datasheet_params=self.datasheet_params, profile_info=self.profile_info)
        fields.update(changes)
        return GPU(**fields)

    def datasheet_only(self) -> GPU:
        """This device priced from datasheet numbers alone (no calibration profile)."""
        return self.copy(params=self.datasheet_params, profile_info={},
                         description=f"{self.description} (datasheet only)")

    def with_profile(self, profile: str | Path | dict) -> GPU:
        """This device priced with a calibration *profile* (a path or a loaded dict)."""
        from labsim_gpus.profiles import apply_profile

        return apply_profile(self, profile)

    @property
    def config_schema(self) -> dict:  # type: ignore[override]
        from labsim_gpus.spec import CONFIG_SCHEMA

        return CONFIG_SCHEMA

    def customize(self, spec: dict) -> GPU:
        """A copy with the inline fields of *spec* (see :mod:`labsim_gpus.spec`)."""
        from labsim_gpus.spec import customize

        return customize(self, spec)

    # -- GEMM ------------------------------------------------------------------------------

    def gemm_time(self, m: int, n: int, k: int, dtype: str = "bf16") -> float:
        """Seconds for ``C[m,n] = A[m,k]·W[n,k]ᵀ`` in *dtype*.

        >>> labsim.device("A100-SXM4-80GB").gemm_time(1, 4096, 4096)  # doctest: +SKIP
        """
        try:
            return self._gemm_cache(m, n, k, dtype)
        except TypeError:  # unhashable argument: validate for a clear message
            return self._gemm_uncached(m, n, k, dtype)

    def _gemm_uncached(self, m, n, k, dtype) -> float:
        m = _positive_int(m, "m", 0)
        n = _positive_int(n, "n", 0)
        k = _positive_int(k, "k", 0)
        terms = self._gemm_terms.get(dtype) if type(dtype) is str else None
        if terms is None:
            peak = self._peak(dtype)            # (an unsupported precision: its UsageError)
            in_bytes = DTYPE_BYTES[canonical(dtype)]
            terms = (peak, in_bytes, 4.0 if in_bytes >= 4 else 2.0)
            if type(dtype) is str:
                self._gemm_terms[dtype] = terms
        peak, in_bytes, out_bytes = terms
        if m == 0 or n == 0 or k == 0:
            return 0.0
        return kernels.gemm_seconds(m, n, k, in_bytes, out_bytes, peak, self.mem_bw,
                                    self.sm_count, self.params)

    # -- attention -------------------------------------------------------------------------

    def _attn_heads(self, num_heads, num_kv_heads, head_dim):
        h = _positive_int(num_heads, "num_heads")
        kvh = _positive_int(num_kv_heads, "num_kv_heads")
        hd = _positive_int(head_dim, "head_dim")
        if h % kvh:
            raise UsageError(f"num_heads ({h}) must be a multiple of num_kv_heads ({kvh})")
        return h, kvh, hd

    def attention_time(self, phase: str, *, batch_size: int = 1, seq_len: int | None = None,
                       num_heads: int, num_kv_heads: int, head_dim: int, kv_dtype: str = "bf16",
                       dtype: str = "bf16", prefix_len: int = 0, seq_lens=None) -> float:
        """Seconds for one layer of attention (heads are per GPU).

        ``prefill``: *batch_size* sequences of *seq_len* new tokens each, attending causally
        to *prefix_len* cached tokens and to themselves. ``decode``: one new token for each
        of *batch_size* sequences holding *seq_len* tokens in the KV cache (including the new
        one), or per-sequence context lengths in *seq_lens* (a list or numpy array).
        """
        phase = str(phase).strip().lower()
        if phase not in ("prefill", "decode"):
            raise UsageError(f"phase must be 'prefill' or 'decode', got {phase!r}")
        h, kvh, hd = self._attn_heads(num_heads, num_kv_heads, head_dim)
        kvb = DTYPE_BYTES[canonical(kv_dtype, "kv_dtype")]
        peak = self._peak(dtype)
        if seq_lens is not None:
            lens = np.asarray(seq_lens)
            if lens.size == 0:
                return 0.0
            if lens.ndim != 1 or not np.issubdtype(lens.dtype, np.number) or np.any(
                    lens != np.floor(lens)) or lens.min() < (1 if phase == "decode" else 0):
                raise UsageError("seq_lens must be a list of whole numbers ≥ "
                                 f"{1 if phase == 'decode' else 0}")
            lens = lens.astype(np.int64)
            if phase == "decode":
                return kernels.decode_seconds(len(lens), float(lens.sum()), float(lens.max()), h, kvh,
                                              hd, kvb, peak, self.mem_bw, self.sm_count,
                                              self.params)
            prefix = _positive_int(prefix_len, "prefix_len", 0)
            pairs = float(np.sum(lens * (prefix + (lens + 1) / 2.0)))
            padded = float(np.sum(-(-lens // kernels.BLOCK_M)) * kernels.BLOCK_M)
            return kernels.prefill_seconds(len(lens), float(lens.sum()), pairs, padded,
                                           prefix + float(lens.max()), h, kvh, hd, kvb, peak,
                                           self.mem_bw, self.sm_count, self.params)
        if seq_len is None:
            raise UsageError("attention_time needs seq_len (or seq_lens)")
        b = _positive_int(batch_size, "batch_size", 0)
        if phase == "decode":
            s = _positive_int(seq_len, "seq_len", 1)
            return kernels.decode_seconds(b, float(b * s), float(s), h, kvh, hd, kvb, peak,
                                          self.mem_bw, self.sm_count, self.params)
        s = _positive_int(seq_len, "seq_len", 0)
        prefix = _positive_int(prefix_len, "prefix_len", 0)
        padded = b * (-(-s // kernels.BLOCK_M)) * kernels.BLOCK_M
        return kernels.prefill_seconds(b, float(b * s), b * kernels.prefill_pairs(s, prefix),
                                       padded, prefix + s, h, kvh, hd, kvb, peak, self.mem_bw,
                                       self.sm_count, self.params)

    def decode_attention_time_from_totals(self, batch_size: int, total_context_tokens: float,
                                          num_heads: int, num_kv_heads: int, head_dim: int,
                                          kv_dtype: str = "bf16",
                                          max_context_tokens: float | None = None) -> float:
        """Decode attention priced from aggregates: *batch_size* sequences holding
        *total_context_tokens* cached tokens in all. Equals :meth:`attention_time` for equal
        lengths; for unequal ones, give *max_context_tokens* (default: the mean) to price the
        longest sequence's tail.
        """
        if batch_size <= 0:
            return 0.0
        h, kvh, hd = self._attn_heads(num_heads, num_kv_heads, head_dim)
        kvb = DTYPE_BYTES[canonical(kv_dtype, "kv_dtype")]
        total = float(total_context_tokens)
        if total < batch_size:
            raise UsageError("total_context_tokens must be ≥ batch_size (each sequence holds "
                             "at least its new token)")
        longest = float(max_context_tokens) if max_context_tokens else total / batch_size
        return kernels.decode_seconds(int(batch_size), total, longest, h, kvh, hd, kvb,
                                      self._peak("bf16") if "bf16" in self.peak_flops
                                      else max(self.peak_flops.values()),
                                      self.mem_bw, self.sm_count, self.params)

    def decode_attention_fn(self, num_heads: int, num_kv_heads: int, head_dim: int,
                            kv_dtype: str = "bf16"):
        """A fast pricer of decode attention for fixed heads: ``f(batch_size,
        total_context_tokens)`` equals :meth:`decode_attention_time_from_totals` with those
        heads (sequences of equal length), bit for bit. The heads and precision are validated
        here, once; ``f`` checks nothing (give an int ``batch_size ≥ 1`` and a whole
        ``total_context_tokens ≥ batch_size`` below 2**53, int or float).
        For engines that price a decode step per iteration.
        """
        h, kvh, hd = self._attn_heads(num_heads, num_kv_heads, head_dim)
        kvb = DTYPE_BYTES[canonical(kv_dtype, "kv_dtype")]
        peak = self._peak("bf16") if "bf16" in self.peak_flops else max(self.peak_flops.values())
        return kernels.decode_seconds_fn(h, kvh, hd, kvb, peak, self.mem_bw, self.sm_count,
                                         self.params)

    def prefill_attention_time_from_totals(self, num_seqs: int, total_new_tokens: float,
                                           total_causal_weight: float, num_heads: int,
                                           num_kv_heads: int, head_dim: int,
                                           kv_dtype: str = "bf16",
                                           max_context_tokens: float | None = None) -> float:
        """Prefill attention of a mixed batch of chunks, priced from aggregates.

        For chunk *i* with ``new_i`` new tokens after ``prefix_i`` cached ones, pass
        ``total_new_tokens = Σ new_i`` and ``total_causal_weight = Σ new_i·(prefix_i + new_i/2)``.
        The exact number of causal (query, key) pairs — hence FLOPs, ``4·heads·head_dim·pairs``
        — is ``total_causal_weight + total_new_tokens/2``: both sums are additive, so an engine
        keeps them as running totals. Row padding is estimated at half a tile per chunk;
        *max_context_tokens* (prefix + new of the longest chunk; default: the mean) prices the
        longest CTA.
        """
        if num_seqs <= 0 or total_new_tokens <= 0:
            return 0.0
        h, kvh, hd = self._attn_heads(num_heads, num_kv_heads, head_dim)
        kvb = DTYPE_BYTES[canonical(kv_dtype, "kv_dtype")]
        new = float(total_new_tokens)
        pairs = float(total_causal_weight) + new / 2.0
        padded = new + num_seqs * kernels.BLOCK_M / 2.0
        longest = float(max_context_tokens) if max_context_tokens else pairs / new * 2.0
        return kernels.prefill_seconds(int(num_seqs), new, pairs, padded, longest, h, kvh, hd, kvb,
                                       self._peak("bf16") if "bf16" in self.peak_flops
                                       else max(self.peak_flops.values()),
                                       self.mem_bw, self.sm_count, self.params)

    # -- memory-bound ops and copies -------------------------------------------------------

    def elementwise_time(self, nbytes: float) -> float:
        """Seconds for an element-wise kernel moving *nbytes* (reads + writes) through DRAM."""
        if nbytes < 0:
            raise UsageError(f"nbytes must be ≥ 0, got {nbytes!r}")
        return kernels.stream_seconds(float(nbytes), self.mem_bw, self.params)

    def norm_time(self, nbytes: float) -> float:
        """Seconds for a normalisation (RMSNorm/LayerNorm) moving *nbytes*: one read-reduce-write
        pass, memory-bound like an element-wise op."""
        return self.elementwise_time(nbytes)

    def memcpy_time(self, nbytes: int, kind: str = "d2d") -> float:
        """Seconds to copy *nbytes*: ``d2d`` within device memory (read + write), ``h2d`` /
        ``d2h`` over the host link (PCIe, one direction)."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, float)) or nbytes < 0:
            raise UsageError(f"nbytes must be a number ≥ 0, got {nbytes!r}")
        kind = str(kind).strip().lower()
        if kind == "d2d":
            return kernels.stream_seconds(2.0 * nbytes, self.mem_bw, self.params)
        if kind in ("h2d", "d2h"):
            p = self.params
            return nbytes / (self.host_link_bw * p.host_link_eff) + p.host_copy_latency_s
        raise UsageError(f"memcpy kind must be one of {', '.join(MEMCPY_KINDS)}, got {kind!r}")

    # -- summary ---------------------------------------------------------------------------

    def pricing(self) -> dict:
        """Which calibration profile prices this device, and why (for summary.json).

        ``how`` is ``catalog`` (a catalog GPU named as such), ``matched`` (figures written
        out that equal catalog GPU ``matched``'s datasheet), ``datasheet-only`` (figures
        written out that match no catalog GPU: its own datasheet, with ``profile``'s
        efficiencies transferred to its architecture) or ``uncalibrated``.
        """
        info = self.profile_info
        how = info.get("source") or ("catalog" if info else "uncalibrated")
        out = {"name": self.name, "profile": info.get("name"), "how": how}
        if info.get("matched"):
            out["matched"] = info["matched"]
        if info.get("transferred_to"):
            out["transferred_to"] = info["transferred_to"]
        return out

    def describe(self) -> dict:
        """The device's figures as a plain dict (for summaries and ``labsim list``)."""
        return {
            "name": self.name, "arch": self.arch,
            "peak_tflops": {k: v / TERA for k, v in self.peak_flops.items()},
            "memory_bytes": self.memory_bytes, "mem_bw_gbps": self.mem_bw / GB,
            "sm_count": self.sm_count, "nvlink_gbps": self.nvlink_bw / GB,
            "host_link_gbps": self.host_link_bw / GB, "tdp_w": self.tdp_w,
            "price_per_hour": self.price_per_hour,
            "profile": self.profile_info.get("name"),
            "params": self.params.as_dict(),
        }

