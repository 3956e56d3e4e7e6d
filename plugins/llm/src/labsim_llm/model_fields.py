"""Reading a model description written by a user: tolerant field names, clear errors.

A model entry may come from labsim's own ``models.json``, from the file named
by ``model_characteristics_db_path``, or be a HuggingFace ``config.json``
pasted as is. :func:`normalize` maps the common alternative spellings onto
the ``models.json`` field names, fills what can be derived (``head_dim``,
``num_key_value_heads`` ...) and checks types, raising a
:class:`labsim.UsageError` that names the model and the field.

>>> normalize({"num_hidden_layers": 2, "d_model": 64, "n_heads": 4, "vocab_size": 100,
...            "intermediate_size": 128}, "tiny")["num_layers"]
2
"""

from __future__ import annotations

import math

from labsim.errors import UsageError

#: alternative spelling → models.json field (HF config.json, Megatron, GPT-2, nanoGPT, seed files)
ALIASES: dict[str, str] = {
    "model_id": "id",
    "name": "id",
    "model_name": "id",
    "model_profile_id": "id",
    "num_hidden_layers": "num_layers",
    "n_layers": "num_layers",
    "n_layer": "num_layers",
    "layers": "num_layers",
    "num_transformer_layers": "num_layers",
    "d_model": "hidden_size",
    "n_embd": "hidden_size",
    "hidden_dim": "hidden_size",
    "dim": "hidden_size",
    "model_dim": "hidden_size",
    "embed_dim": "hidden_size",
    "ffn_dim": "intermediate_size",
    "d_ff": "intermediate_size",
    "n_inner": "intermediate_size",
    "ffn_hidden_size": "intermediate_size",
    "ffn_size": "intermediate_size",
    "n_head": "num_attention_heads",
    "n_heads": "num_attention_heads",
    "num_heads": "num_attention_heads",
    "attention_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads",
    "n_kv_heads": "num_key_value_heads",
    "n_head_kv": "num_key_value_heads",
    "num_query_groups": "num_key_value_heads",
    "kv_heads": "num_key_value_heads",
    "d_head": "head_dim",
    "kv_channels": "head_dim",
    "head_size": "head_dim",
    "n_vocab": "vocab_size",
    "padded_vocab_size": "vocab_size",
    "n_positions": "max_position_embeddings",
    "n_ctx": "max_position_embeddings",
    "max_seq_len": "max_position_embeddings",
    "seq_length": "max_position_embeddings",
    "context_length": "max_position_embeddings",
    "max_context_length": "max_position_embeddings",
    "num_local_experts": "num_experts",
    "n_routed_experts": "num_experts",
    "moe_num_experts": "num_experts",
    "num_experts_per_tok": "num_experts_per_token",
    "moe_top_k": "num_experts_per_token",
    "top_k": "num_experts_per_token",
    "params": "num_parameters",
    "n_params": "num_parameters",
    "num_params": "num_parameters",
    "parameters": "num_parameters",
    "parameter_count": "num_parameters",
    "torch_dtype": "dtype_default",
    "dtype": "dtype_default",
    "hidden_act": "activation",
    "activation_function": "activation",
    "model_type": "family",
}
#: fields given in billions → multiply by 1e9
BILLIONS = (
    "params_billion",
    "params_b",
    "num_parameters_billion",
    "parameters_billion",
    "size_billion",
    "params_billions",
)

DTYPE_NAMES = {
    "float32": "fp32",
    "fp32": "fp32",
    "tf32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float16": "fp16",
    "fp16": "fp16",
    "half": "fp16",
    "fp8": "fp8",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "int8": "int8",
    "int4": "int4",
    "fp4": "fp4",
    "nvfp4": "fp4",
    "mxfp4": "fp4",
}

ENCODER_FAMILIES = {
    "bert",
    "roberta",
    "distilbert",
    "deberta",
    "deberta-v2",
    "electra",
    "xlm-roberta",
}
GATED_FAMILIES = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "phi3",
    "deepseek",
    "deepseek_v2",
    "deepseek_v3",
    "olmo",
    "yi",
    "internlm2",
}
STANDARD_FAMILIES = {
    "gpt2",
    "gpt3",
    "gpt_neox",
    "gptj",
    "opt",
    "bloom",
    "falcon",
    "bert",
    "roberta",
    "gpt_bigcode",
    "phi",
}
LEARNED_POSITION_FAMILIES = {"gpt2", "gpt3", "opt", "bert", "roberta", "gpt_bigcode"}

INT_FIELDS = (
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "sliding_window",
    "type_vocab_size",
    "num_experts",
    "num_experts_per_token",
    "num_parameters",
    "num_active_parameters",
)
FLOAT_FIELDS = (
    "num_parameters_reported",
    "flops_per_sample_forward",
    "macs_per_sample_forward",
    "rope_theta",
)
BOOL_FIELDS = ("tie_word_embeddings", "qkv_bias", "attention_output_bias", "mlp_bias", "qk_norm")
CHOICES = {
    "architecture": ("decoder", "encoder", "cnn"),
    "mlp": ("gated", "standard"),
    "norm": ("rmsnorm", "layernorm"),
    "position": ("rope", "learned"),
}


def _bad(model: str, field: str, message: str) -> UsageError:
    return UsageError(f"model {model!r}: field {field!r} {message}")


def _as_int(model: str, field: str, value, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(model, field, f"must be a positive integer; got {value!r}")
    if value != int(value) and field not in ("num_parameters", "num_active_parameters"):
        raise _bad(model, field, f"must be a whole number; got {value!r}")
    out = int(round(value))
    if out < 0 or (out == 0 and not allow_zero):
        raise _bad(model, field, f"must be a positive integer; got {value!r}")
    return out


def normalize_names(raw: dict, fallback_id: str = "") -> dict:
    """*raw* with alternative spellings renamed to models.json field names (nothing else)."""
    data: dict = {k: v for k, v in raw.items() if k not in ALIASES and k not in BILLIONS}
    for key, value in raw.items():  # an exact field name beats an alternative spelling
        if key in BILLIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise _bad(
                    str(raw.get("id") or fallback_id or "?"),
                    key,
                    f"must be a positive number of billions; got {value!r}",
                )
            canon, value = "num_parameters", value * 1e9
        elif key in ALIASES:
            canon = ALIASES[key]
        else:
            continue
        if data.get(canon) is None:
            data[canon] = value
    return data


def normalize(raw: dict, fallback_id: str = "") -> dict:
    """*raw* with models.json field names, derived fields filled in and types checked."""
    if not isinstance(raw, dict):
        raise UsageError(
            f"model {fallback_id!r}: expected a mapping of fields, got {type(raw).__name__}"
        )
    data = normalize_names(raw, fallback_id)
    model = str(data.get("id") or fallback_id or "?")
    data["id"] = model
    _hf_conventions(raw, data)

    for field in INT_FIELDS:
        if data.get(field) is not None:
            data[field] = _as_int(model, field, data[field])
    for field in FLOAT_FIELDS:
        value = data.get(field)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            raise _bad(model, field, f"must be a positive number; got {value!r}")
    for field in BOOL_FIELDS:
        if data.get(field) is not None and not isinstance(data[field], bool):
            raise _bad(model, field, f"must be true or false; got {data[field]!r}")
    if data.get("dtype_default") is not None:
        name = str(data["dtype_default"]).lower()
        if name not in DTYPE_NAMES:
            raise _bad(
                model,
                "dtype_default",
                f"must be one of {', '.join(sorted(set(DTYPE_NAMES)))}; "
                f"got {data['dtype_default']!r}",
            )
        data["dtype_default"] = DTYPE_NAMES[name]
    aliases = data.get("aliases") or []
    if isinstance(aliases, str):
        aliases = [aliases]
    if not isinstance(aliases, (list, tuple)) or not all(isinstance(a, str) for a in aliases):
        raise _bad(model, "aliases", f"must be a list of strings; got {aliases!r}")
    data["aliases"] = tuple(aliases)
    family = str(data.get("family") or "").lower()
    data["family"] = family

    data.setdefault("architecture", _guess_architecture(data, raw))
    if data["architecture"] not in CHOICES["architecture"]:
        raise _bad(
            model,
            "architecture",
            f"must be one of decoder, encoder, cnn; got {data['architecture']!r}",
        )
    if data["architecture"] == "cnn":
        return _normalize_cnn(model, data)
    return _normalize_transformer(model, data)


def _hf_conventions(raw: dict, data: dict) -> None:
    """Fields a HuggingFace config.json implies without stating them."""
    family = str(data.get("family") or "").lower()
    if "attention_bias" in raw and "qkv_bias" not in raw:
        data["qkv_bias"] = data["attention_output_bias"] = bool(raw["attention_bias"])
    if family.startswith("qwen2") and "qkv_bias" not in raw and "attention_bias" not in raw:
        data["qkv_bias"] = True  # Qwen2 attention always has q/k/v biases (modeling_qwen2.py)
    if family.startswith("qwen3") and "qk_norm" not in raw:
        data["qk_norm"] = True  # Qwen3 normalises q and k per head (modeling_qwen3.py)
    if "norm" not in raw:
        if "rms_norm_eps" in raw:
            data["norm"] = "rmsnorm"
        elif any(k in raw for k in ("layer_norm_eps", "layer_norm_epsilon", "layernorm_epsilon")):
            data["norm"] = "layernorm"
    if raw.get("use_sliding_window") is False:
        data["sliding_window"] = None
    if family in LEARNED_POSITION_FAMILIES:
        data.setdefault("position", "learned")
        data.setdefault("qkv_bias", True)
        data.setdefault("attention_output_bias", True)
        data.setdefault("mlp_bias", True)
        data.setdefault("norm", "layernorm")
    if family in ("gpt2", "gpt3", "bert") and "tie_word_embeddings" not in data:
        data["tie_word_embeddings"] = True  # HF default for these families
    if family == "gpt2" and data.get("intermediate_size") is None and data.get("hidden_size"):
        data["intermediate_size"] = (
            4 * data["hidden_size"]
        )  # HF GPT2Config: n_inner None → 4·n_embd


def _guess_architecture(data: dict, raw: dict) -> str:
    archs = (
        " ".join(raw.get("architectures") or [])
        if isinstance(raw.get("architectures"), list)
        else ""
    )
    if data["family"] in ENCODER_FAMILIES or "MaskedLM" in archs:
        return "encoder"
    if data.get("num_layers") is None and (
        data.get("flops_per_sample_forward") or data.get("macs_per_sample_forward")
    ):
        return "cnn"
    return "decoder"


def _normalize_cnn(model: str, data: dict) -> dict:
    if data.get("num_parameters") is None:
        raise _bad(model, "num_parameters", "is missing (a CNN entry needs num_parameters)")
    if data.get("flops_per_sample_forward") is None:
        if data.get("macs_per_sample_forward") is None:
            raise _bad(
                model,
                "flops_per_sample_forward",
                "is missing (a CNN entry needs flops_per_sample_forward or "
                "macs_per_sample_forward)",
            )
        data["flops_per_sample_forward"] = 2.0 * data["macs_per_sample_forward"]
    data.setdefault("num_active_parameters", data["num_parameters"])
    return data


def _normalize_transformer(model: str, data: dict) -> dict:
    for field in ("num_layers", "hidden_size", "num_attention_heads", "vocab_size"):
        if data.get(field) is None:
            alts = sorted(k for k, v in ALIASES.items() if v == field)
            raise _bad(model, field, f"is missing (also accepted: {', '.join(alts)})")
    for field, choices in CHOICES.items():
        if data.get(field) is not None and data[field] not in choices:
            raise _bad(model, field, f"must be one of {', '.join(choices)}; got {data[field]!r}")
    heads = data["num_attention_heads"]
    if data.get("head_dim") is None:
        if data["hidden_size"] % heads:
            raise _bad(
                model,
                "head_dim",
                f"is missing and hidden_size {data['hidden_size']} is not a "
                f"multiple of num_attention_heads {heads}; give head_dim",
            )
        data["head_dim"] = data["hidden_size"] // heads
    if data.get("num_key_value_heads") is None:
        data["num_key_value_heads"] = heads
    if heads % data["num_key_value_heads"]:
        raise _bad(
            model,
            "num_key_value_heads",
            f"{data['num_key_value_heads']} must divide num_attention_heads {heads}",
        )
    experts = data.get("num_experts")
    if experts is not None and experts <= 1:
        data["num_experts"] = experts = None
    if experts is None:
        data["num_experts_per_token"] = None
    elif data.get("num_experts_per_token") is None:
        raise _bad(model, "num_experts_per_token", f"is missing for a mixture of {experts} experts")
    elif data["num_experts_per_token"] > experts:
        raise _bad(
            model,
            "num_experts_per_token",
            f"{data['num_experts_per_token']} exceeds num_experts {experts}",
        )
    family = data["family"]
    defaults = {
        "norm": "layernorm" if family in STANDARD_FAMILIES else "rmsnorm",
        "position": "learned" if family in LEARNED_POSITION_FAMILIES else "rope",
        "tie_word_embeddings": False,
        "qkv_bias": False,
        "attention_output_bias": False,
        "mlp_bias": False,
        "qk_norm": False,
        "dtype_default": "bf16",
    }
    for field, value in defaults.items():
        if data.get(field) is None:
            data[field] = value
    if data["position"] == "learned" and data.get("max_position_embeddings") is None:
        raise _bad(
            model, "max_position_embeddings", "is missing (learned position embeddings need it)"
        )
    if data.get("mlp") is None:
        data["mlp"] = _guess_mlp(data)
    if data.get("intermediate_size") is None:
        data["intermediate_size"] = _solve_intermediate(model, data)
    return data


def _guess_mlp(data: dict) -> str:
    act = str(data.get("activation") or "").lower()
    if data["family"] in GATED_FAMILIES or act in ("silu", "swish", "swiglu", "geglu"):
        return "gated"
    if data["family"] in STANDARD_FAMILIES or act.startswith(("gelu", "relu")):
        return "standard"
    return "gated"  # assumption: an unlabelled modern decoder uses SwiGLU (Llama, Mistral, Qwen)


def _solve_intermediate(model: str, data: dict) -> int:
    """The FFN width that makes the parameter count match ``num_parameters`` (linear in it)."""
    from labsim_llm.models import count_parameters  # late import: models imports this module

    if data.get("num_parameters") is None:
        raise _bad(
            model,
            "intermediate_size",
            "is missing (give it, or num_parameters to derive it from; "
            "also accepted: d_ff, ffn_dim, ffn_hidden_size, n_inner)",
        )
    at0 = count_parameters({**data, "intermediate_size": 0})
    at1 = count_parameters({**data, "intermediate_size": 1})
    width = (data["num_parameters"] - at0) / max(at1 - at0, 1)
    if width < 1:
        raise _bad(
            model,
            "num_parameters",
            f"{data['num_parameters']:,} is smaller than the attention and "
            "embedding weights alone; check it, or give intermediate_size",
        )
    return int(round(width))
