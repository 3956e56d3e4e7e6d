"""The model characteristics database: architecture shapes → weights, KV cache, GEMMs, FLOPs.

labsim registers the models of ``data/models.json`` (Llama 2/3/3.1, Mistral,
Mixtral, Qwen2.5, Qwen3, GPT-2, GPT-3, BERT, ResNet-50) under the registry
kind ``models``. An experiment names one (``model_profile_id: Llama3-8B``);
:func:`resolve_model` looks it up, first in the user's
``model_characteristics_db_path`` file, then among the registered models
(case-insensitive, with aliases such as ``meta-llama/Meta-Llama-3-8B``).

The serving and training engines ask a :class:`ModelSpec` for sizes and
shapes, never for times; the hardware cost model prices them::

    >>> spec = builtin_models()["Llama-3.1-8B"]
    >>> spec.kv_bytes_per_token("bf16")       # 32 layers · 2 (K,V) · 8 heads · 128 · 2 B
    131072
    >>> spec.layer_gemms(tp=2)[0]
    ('qkv_proj', 3072, 4096, 1)

Tensor parallelism (``tp``) follows Megatron/vLLM: attention heads, FFN
columns and the vocabulary are split over the GPUs; norms, biases added after
a row-parallel layer and position tables are replicated; KV heads are split
when there are at least ``tp`` of them and replicated (one per GPU) when
there are fewer. Pipeline parallelism (``pp``) splits the layers into
contiguous stages (``numpy.array_split`` order: earlier stages take the
remainder); the embedding lives on the first stage, final norm and LM head on
the last (a tied LM head is a second copy there when ``pp > 1``). Per-GPU
figures are those of the most loaded stage.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, fields
from importlib import resources
from typing import Any, ClassVar

from labsim.errors import UnknownNameError, UsageError

from labsim_llm import model_db, model_fields

#: bytes per element of each precision name (int4/fp4: half a byte, scales not counted)
DTYPE_BYTES = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
}

SHAPE_FIELDS = (
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "tie_word_embeddings",
    "mlp",
    "norm",
    "position",
    "qkv_bias",
    "attention_output_bias",
    "mlp_bias",
    "qk_norm",
    "type_vocab_size",
    "num_experts",
    "num_experts_per_token",
    "architecture",
)


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of *dtype* (``bf16`` → 2.0); accepts torch names (``bfloat16``)."""
    name = model_fields.DTYPE_NAMES.get(str(dtype).lower())
    if name is None:
        raise UsageError(
            f"unknown dtype {dtype!r}; allowed: {', '.join(sorted(DTYPE_BYTES))} "
            "(and torch spellings such as bfloat16, float16)"
        )
    return DTYPE_BYTES[name]


def _split(total: int, parts: int, what: str, model: str) -> int:
    if total % parts:
        raise UsageError(
            f"model {model!r}: {what} {total} is not divisible by tensor parallelism {parts}"
        )
    return total // parts


def layers_per_stage(num_layers: int, pp: int) -> list[int]:
    """Layers of each of *pp* pipeline stages (earlier stages take the remainder)."""
    if pp < 1 or pp > num_layers:
        raise UsageError(f"pipeline parallelism {pp} must be between 1 and the {num_layers} layers")
    base, extra = divmod(num_layers, pp)
    return [base + (1 if i < extra else 0) for i in range(pp)]


@dataclass(frozen=True)
class ModelSpec:
    """One model's architecture, as in ``models.json`` (see ``data/README.md`` for every field).

    Build one with :meth:`from_dict` (tolerant field names); the registered
    models come from :func:`builtin_models`.
    """

    #: the experiment key of the run's own model file (see :mod:`labsim_llm.model_db`)
    experiment_fields: ClassVar[dict] = {model_db.FIELD: model_db.FIELD_SCHEMA}

    name: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    family: str = ""
    architecture: str = "decoder"
    num_layers: int | None = None
    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    max_position_embeddings: int | None = None
    tie_word_embeddings: bool = False
    mlp: str | None = "gated"
    activation: str | None = None
    norm: str | None = "rmsnorm"
    position: str | None = "rope"
    rope_theta: float | None = None
    sliding_window: int | None = None
    qkv_bias: bool = False
    attention_output_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    type_vocab_size: int | None = None
    num_experts: int | None = None
    num_experts_per_token: int | None = None
    num_parameters: int = 0
    num_active_parameters: int = 0
    num_parameters_reported: float | None = None
    flops_per_sample_forward: float | None = None
    macs_per_sample_forward: float | None = None
    input_shape: tuple | None = None
    dtype_default: str = "bf16"
    source: str = ""
    notes: str = ""

    config_schema = {"type": "object"}  # a model is data, not a configurable component

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict, name: str = "") -> ModelSpec:
        """A spec from a models.json-style mapping, HF ``config.json`` or seed-style entry.

        Alternative names (``num_hidden_layers``, ``n_layers``, ``params_billion``,
        ``torch_dtype`` ...) are accepted; missing shapes are derived where the
        physics allows (``head_dim`` = hidden / heads; ``intermediate_size`` from
        ``num_parameters``). ``num_parameters`` is always the exact count from the
        architecture; a different figure given by the user is kept as
        ``num_parameters_reported``.

        :raises UsageError: naming the model and the missing or bad field.

        >>> ModelSpec.from_dict({"id": "tiny", "num_layers": 2, "hidden_size": 64,
        ...     "num_attention_heads": 4, "vocab_size": 100,
        ...     "intermediate_size": 128}).num_parameters
        95040
        """
        data = model_fields.normalize(d, name)
        if data["architecture"] != "cnn":
            exact = count_parameters(data)
            given = data.get("num_parameters")
            if given is not None and given != exact and data.get("num_parameters_reported") is None:
                data["num_parameters_reported"] = float(given)
            data["num_parameters"] = exact
            data["num_active_parameters"] = count_parameters(data, active=True)
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["name"] = data["id"]
        if kwargs.get("input_shape") is not None:
            kwargs["input_shape"] = tuple(kwargs["input_shape"])
        if not kwargs.get("description"):
            kwargs["description"] = _describe(data)
        return cls(**{k: v for k, v in kwargs.items() if v is not None or k in _NULLABLE})

    def to_dict(self) -> dict:
        """The fields as a models.json entry (``id`` instead of ``name``)."""
        out = asdict(self)
        out["id"] = out.pop("name")
        out["aliases"] = list(self.aliases)
        return out

    # -- what it is ------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.name

    @property
    def is_decoder(self) -> bool:
        """True for autoregressive decoders (the models a serving engine generates with)."""
        return self.architecture == "decoder"

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts)

    def _transformer(self, what: str) -> None:
        if self.architecture == "cnn":
            raise UsageError(f"model {self.name!r} is a CNN; it has no {what}")

    # -- tensor-parallel shapes ---------------------------------------------------------------

    def attention_heads(self, tp: int = 1) -> tuple[int, int, int]:
        """``(query heads, KV heads, head_dim)`` on one GPU under tensor parallelism *tp*."""
        self._transformer("attention")
        tp = int(tp)
        if tp < 1:
            raise UsageError(f"tensor parallelism must be ≥ 1; got {tp}")
        heads = _split(self.num_attention_heads, tp, "num_attention_heads", self.name)
        kv = self.num_key_value_heads
        if kv >= tp:
            kv_gpu = _split(kv, tp, "num_key_value_heads", self.name)
        elif tp % kv:
            raise UsageError(
                f"model {self.name!r}: tensor parallelism {tp} must be a multiple of "
                f"num_key_value_heads {kv} to replicate the KV heads"
            )
        else:
            kv_gpu = 1
        return heads, kv_gpu, self.head_dim

    def _ffn(self, tp: int) -> int:
        return _split(self.intermediate_size, tp, "intermediate_size", self.name)

    def layer_gemms(self, tp: int = 1) -> list[tuple[str, int, int, int]]:
        """The GEMMs of one transformer layer on one GPU: ``(label, n, k, count)``.

        Each is ``C[m,n] = A[m,k]·W[n,k]ᵀ`` with m = the tokens in the step.
        Dense models: ``qkv_proj``, ``o_proj``, then ``gate_up_proj`` and
        ``down_proj`` (gated MLP) or ``fc1`` and ``fc2`` (standard MLP); count 1.
        MoE models: ``qkv_proj``, ``o_proj``, ``router`` (n = num_experts, count 1),
        then ``expert_gate_up`` and ``expert_down`` with count = experts per token:
        each token passes through that many experts, so a step of m tokens does
        ``m·count`` expert rows in total, spread over ``num_experts`` weight
        matrices (about ``m·count/num_experts`` rows each when routing is even).
        Each expert is itself tensor-parallel (split over *tp*, as vLLM does).
        """
        heads, kv, hd = self.attention_heads(tp)
        h = self.hidden_size
        ffn = self._ffn(tp)
        out = [("qkv_proj", (heads + 2 * kv) * hd, h, 1), ("o_proj", h, heads * hd, 1)]
        if self.is_moe:
            k = self.num_experts_per_token
            up = 2 * ffn if self.mlp == "gated" else ffn
            out += [
                ("router", self.num_experts, h, 1),
                ("expert_gate_up", up, h, k),
                ("expert_down", h, ffn, k),
            ]
        elif self.mlp == "gated":
            out += [("gate_up_proj", 2 * ffn, h, 1), ("down_proj", h, ffn, 1)]
        else:
            out += [("fc1", ffn, h, 1), ("fc2", h, ffn, 1)]
        return out

    def lm_head_gemm(self, tp: int = 1) -> tuple[int, int]:
        """``(n, k)`` of the LM head GEMM on one GPU: the vocabulary split over *tp*, rounded up."""
        self._transformer("LM head")
        return math.ceil(self.vocab_size / int(tp)), self.hidden_size

    # -- memory ---------------------------------------------------------------------------------

    def _layer_params(self, tp: int) -> int:
        heads, kv, hd = self.attention_heads(tp)
        h = self.hidden_size
        ffn = self._ffn(tp)
        n = sum(nn * kk * c for _, nn, kk, c in self.layer_gemms(tp) if not _.startswith("expert_"))
        if self.is_moe:
            mats = 3 if self.mlp == "gated" else 2
            n += self.num_experts * mats * h * ffn
        norm = 2 * h if self.norm == "layernorm" else h
        n += 2 * norm
        if self.qkv_bias:
            n += (heads + 2 * kv) * hd
        if self.attention_output_bias:
            n += h
        if self.qk_norm:
            n += 2 * hd
        if self.mlp_bias:
            n += (self.num_experts or 1) * ((2 * ffn if self.mlp == "gated" else ffn) + h)
        return n

    def _first_stage_params(self, tp: int) -> int:
        h = self.hidden_size
        n = math.ceil(self.vocab_size / tp) * h
        if self.position == "learned":
            n += self.max_position_embeddings * h
        if self.type_vocab_size:
            n += self.type_vocab_size * h
        if self.architecture == "encoder":
            n += 2 * h  # embedding LayerNorm (post-LN encoders)
        return n

    def _last_stage_params(self, tp: int, pp: int) -> int:
        h = self.hidden_size
        if self.architecture == "encoder":
            return h * h + h  # pooler
        n = 2 * h if self.norm == "layernorm" else h
        if not self.tie_word_embeddings or pp > 1:
            n += self.lm_head_gemm(tp)[0] * h
        return n

    def parameters_per_gpu(self, tp: int = 1, pp: int = 1) -> int:
        """Parameters held by the most loaded GPU under *tp* × *pp*."""
        if self.architecture == "cnn":
            if tp != 1 or pp != 1:
                raise UsageError(
                    f"model {self.name!r} is a CNN; tensor/pipeline parallelism do not apply"
                )
            return self.num_parameters
        stages = layers_per_stage(self.num_layers, int(pp))
        per_layer = self._layer_params(int(tp))
        totals = [n * per_layer for n in stages]
        totals[0] += self._first_stage_params(int(tp))
        totals[-1] += self._last_stage_params(int(tp), int(pp))
        return max(totals)

    def weight_bytes(self, dtype: str = "bf16", tp: int = 1, pp: int = 1) -> int:
        """Bytes of weights on the most loaded GPU (``dtype`` "auto" = the released precision).

        >>> builtin_models()["Llama-3.1-8B"].weight_bytes("bf16") / 2**30   # doctest: +ELLIPSIS
        14.95...
        """
        if dtype in (None, "auto"):
            dtype = self.dtype_default
        return int(math.ceil(self.parameters_per_gpu(tp, pp) * dtype_bytes(dtype)))

    def kv_bytes_per_token(self, kv_dtype: str = "bf16", tp: int = 1, pp: int = 1) -> int:
        """Bytes of K and V one token occupies on one GPU, over the layers of its stage.

        KV heads are split over *tp* (replicated when ``tp`` exceeds them). The
        whole context is counted: a sliding window (Mistral) is not applied.
        """
        if kv_dtype in (None, "auto"):
            kv_dtype = self.dtype_default
        _, kv, hd = self.attention_heads(tp)
        layers = max(layers_per_stage(self.num_layers, int(pp)))
        return int(math.ceil(2 * kv * hd * layers * dtype_bytes(kv_dtype)))

    # -- compute --------------------------------------------------------------------------------

    def flops_per_token(self, context_len: int = 0) -> float:
        """Forward FLOPs for one token that attends to *context_len* tokens (for MFU).

        2 FLOPs per multiply-add of every weight matrix the token passes
        through (attention projections, the routed experts and router, the LM
        head; not the embedding lookup), plus attention scores and the weighted
        sum: ``4 · layers · heads · head_dim · context_len``. A CNN returns
        ``flops_per_sample_forward`` (one image).
        """
        if self.architecture == "cnn":
            return float(self.flops_per_sample_forward)
        matmul = sum(n * k * c for _, n, k, c in self.layer_gemms(1)) * self.num_layers
        if self.architecture == "decoder":
            matmul += self.vocab_size * self.hidden_size
        attention = (
            4.0 * self.num_layers * self.num_attention_heads * self.head_dim * max(context_len, 0)
        )
        return 2.0 * matmul + attention


_NULLABLE = {
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "mlp",
    "norm",
    "position",
}


def count_parameters(d: dict, active: bool = False) -> int:
    """Exact parameter count of a normalized transformer entry (all experts unless *active*)."""
    h, layers = d["hidden_size"], d["num_layers"]
    heads, kv, hd = d["num_attention_heads"], d["num_key_value_heads"], d["head_dim"]
    ffn, experts = d["intermediate_size"], d.get("num_experts") or 0
    mats = 3 if d["mlp"] == "gated" else 2
    norm = 2 * h if d["norm"] == "layernorm" else h
    layer = h * (heads + 2 * kv) * hd + heads * hd * h + 2 * norm
    layer += (heads + 2 * kv) * hd if d["qkv_bias"] else 0
    layer += h if d["attention_output_bias"] else 0
    layer += 2 * hd if d["qk_norm"] else 0
    mlp = mats * h * ffn + (((mats - 1) * ffn + h) if d["mlp_bias"] else 0)
    used = (d["num_experts_per_token"] if active else experts) if experts else 1
    layer += used * mlp + (h * experts if experts else 0)
    total = layers * layer + d["vocab_size"] * h
    if d["position"] == "learned":
        total += d["max_position_embeddings"] * h
    total += (d.get("type_vocab_size") or 0) * h
    if d["architecture"] == "encoder":
        total += 2 * h + h * h + h  # embedding LayerNorm + pooler (BertModel)
    else:
        total += norm + (0 if d["tie_word_embeddings"] else d["vocab_size"] * h)
    return int(total)


def _describe(d: dict) -> str:
    if d["architecture"] == "cnn":
        return f"{d['id']}: CNN, {d['num_parameters'] / 1e6:.1f}M parameters"
    params = d["num_parameters"]
    size = f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
    moe = (
        f", MoE {d['num_experts']}×top-{d['num_experts_per_token']}" if d.get("num_experts") else ""
    )
    return (
        f"{d['id']}: {d['architecture']}, {size} parameters, {d['num_layers']} layers, "
        f"{d['num_attention_heads']}/{d['num_key_value_heads']} heads{moe}"
    )


@functools.cache
def builtin_models() -> dict[str, ModelSpec]:
    """The models shipped in ``data/models.json``, by id."""
    text = resources.files("labsim_llm").joinpath("data", "models.json").read_text("utf-8")
    return {m["id"]: ModelSpec.from_dict(m) for m in json.loads(text)["models"]}


def _find_in_db(db: dict[str, Any], model_id: str) -> str | None:
    if model_id in db:
        return model_id
    key = str(model_id).casefold()
    for name, entry in db.items():
        spellings = [name, *(entry.get("aliases") or [] if isinstance(entry, dict) else [])]
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            spellings.append(entry["id"])
        if any(isinstance(s, str) and s.casefold() == key for s in spellings):
            return name
    return None


def resolve_model(context, model_id: str) -> ModelSpec:
    """The model *model_id*: from the experiment's model file first, then the registry.

    A file entry whose id (or ``base_model``) names a registered model only
    needs the fields it changes; the rest come from the registered model (the
    parameter count is recomputed when a shape changes).

    :raises UsageError: a file entry with a missing or bad field.
    :raises UnknownNameError: no such model (lists what exists, suggests the nearest).
    """
    registry = context.registry
    db = model_db.model_db(context)
    key = _find_in_db(db, model_id)
    if key is not None:
        raw = db[key]
        if not isinstance(raw, dict):
            raise UsageError(f"model {key!r} in the model file: expected a mapping of fields")
        base_name = raw.get("base_model") or raw.get("base") or raw.get("id") or key
        entry = dict(raw)
        if registry.has("models", base_name):
            base = registry.get("models", base_name).to_dict()
            own = model_fields.normalize_names(entry)
            if any(f in own and own[f] != base.get(f) for f in SHAPE_FIELDS):
                for f in (
                    "num_parameters",
                    "num_active_parameters",
                    "num_parameters_reported",
                    "description",
                ):
                    base.pop(f, None)
            base.pop("aliases", None)
            entry = {**base, **own}
        entry.setdefault("id", key)
        try:
            return ModelSpec.from_dict(entry, key)
        except UsageError as ex:
            raise UsageError(f"model_characteristics_db_path: {ex}") from None
    try:
        return registry.get("models", model_id)
    except UnknownNameError:
        names = sorted({*registry.names("models"), *db}, key=str.lower)
        raise UnknownNameError("models", str(model_id), names, registry.loaded.failed) from None


__all__ = [
    "ModelSpec",
    "builtin_models",
    "count_parameters",
    "dtype_bytes",
    "layers_per_stage",
    "resolve_model",
    "DTYPE_BYTES",
]
