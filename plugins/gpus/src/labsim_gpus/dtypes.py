"""Precisions: canonical names, accepted spellings and bytes per element.

Every cost method takes a ``dtype`` string. Spellings used by frameworks and
measurement tables (``bfloat16``, ``half``, ``float8_e4m3fn``...) resolve to
one canonical key of :data:`DTYPE_BYTES`:

>>> canonical("bfloat16"), DTYPE_BYTES["fp8"]
('bf16', 1)
"""

from __future__ import annotations

from labsim.errors import UsageError

#: bytes per element of each canonical precision (fp4 packs two values per byte)
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "fp4": 0.5,
}

#: precisions that have a dense-peak entry in a device's ``peak_flops``
COMPUTE_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")

_ALIASES = {
    "float32": "fp32", "float": "fp32", "f32": "fp32",
    "tensorfloat32": "tf32",
    "bfloat16": "bf16", "bf16": "bf16",
    "float16": "fp16", "half": "fp16", "f16": "fp16",
    "float8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "e4m3": "fp8", "e5m2": "fp8",
    "float8_e4m3fn": "fp8", "float8_e5m2": "fp8",
    "int8": "int8", "i8": "int8",
    "fp4": "fp4", "nvfp4": "fp4", "float4": "fp4",
}


def canonical(dtype: str, field: str = "dtype") -> str:
    """The canonical name of *dtype*; a :class:`UsageError` naming *field* if unknown."""
    key = str(dtype).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        raise UsageError(f"{field} {dtype!r} is not a known precision; use one of "
                         f"{', '.join(DTYPE_BYTES)}")
    return key


def nbytes(dtype: str, field: str = "dtype") -> float:
    """Bytes per element of *dtype* (any accepted spelling)."""
    return DTYPE_BYTES[canonical(dtype, field)]
