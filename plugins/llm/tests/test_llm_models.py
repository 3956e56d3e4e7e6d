"""The model database: registered models, resolution, parameter counts, shapes under TP/PP."""

from __future__ import annotations

import json
from importlib import resources
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.errors import UnknownNameError, UsageError
from labsim_llm.models import ModelSpec, builtin_models, layers_per_stage, resolve_model

RAW = {
    m["id"]: m
    for m in json.loads(
        resources.files("labsim_llm").joinpath("data", "models.json").read_text("utf-8")
    )["models"]
}
MODELS = builtin_models()
TRANSFORMERS = [m for m in MODELS.values() if m.architecture != "cnn"]


def ctx(registry, db=None):
    return SimpleNamespace(registry=registry, model_db=db or {})


# -- the registered database -----------------------------------------------------------------


def test_every_issue_model_is_registered(llm_registry):
    wanted = [
        "Llama-2-7B",
        "Llama-2-13B",
        "Llama-2-70B",
        "Llama-3.1-8B",
        "Llama-3.1-70B",
        "Llama-3.1-405B",
        "Mistral-7B",
        "Mixtral-8x7B",
        "Qwen2.5-7B",
        "Qwen2.5-14B",
        "Qwen2.5-32B",
        "Qwen2.5-72B",
        "Qwen3-8B",
        "Qwen3-14B",
        "Qwen3-32B",
        "GPT-2-Small",
        "GPT-2-Medium",
        "GPT-2-Large",
        "GPT-2-XL",
        "GPT-3-175B",
        "BERT-Base",
        "BERT-Large",
        "ResNet-50",
    ]
    names = llm_registry.names("models")
    assert set(wanted) <= set(names)
    for name in names:
        assert llm_registry.get("models", name).source.startswith("https://")


@pytest.mark.parametrize(
    "spelling", ["Llama3-8B", "meta-llama/Meta-Llama-3-8B", "llama-3-8b", "LLAMA-3-8B"]
)
def test_aliases_name_one_model(llm_registry, spelling):
    assert resolve_model(ctx(llm_registry), spelling).name == "Llama-3-8B"


@pytest.mark.parametrize("spec", TRANSFORMERS, ids=lambda m: m.name)
def test_parameter_count_is_exact_and_close_to_reported(spec):
    assert spec.num_parameters == RAW[spec.name]["num_parameters"]
    assert spec.num_active_parameters == RAW[spec.name]["num_active_parameters"]
    assert spec.parameters_per_gpu() == spec.num_parameters
    assert abs(spec.num_parameters / RAW[spec.name]["num_parameters_reported"] - 1) < 0.02


def test_moe_counts_every_expert_but_activates_top_k():
    mixtral = MODELS["Mixtral-8x7B"]
    assert mixtral.num_parameters == pytest.approx(46.7e9, rel=0.01)
    assert mixtral.num_active_parameters == pytest.approx(12.9e9, rel=0.01)
    labels = {g[0]: g for g in mixtral.layer_gemms(2)}
    assert labels["router"] == ("router", 8, 4096, 1)
    assert labels["expert_gate_up"] == (
        "expert_gate_up",
        14336,
        4096,
        2,
    )  # 2·14336/2 columns, top-2
    assert labels["expert_down"] == ("expert_down", 4096, 7168, 2)


# -- shapes ------------------------------------------------------------------------------------


def test_llama_70b_gemms_under_tp8():
    spec = MODELS["Llama-3.1-70B"]
    assert spec.layer_gemms(8) == [
        ("qkv_proj", (8 + 2) * 128, 8192, 1),
        ("o_proj", 8192, 1024, 1),
        ("gate_up_proj", 7168, 8192, 1),
        ("down_proj", 8192, 3584, 1),
    ]
    assert spec.lm_head_gemm(8) == (16032, 8192)
    assert spec.attention_heads(8) == (8, 1, 128)
    assert spec.attention_heads(16) == (4, 1, 128)  # 8 KV heads replicated over 16 GPUs


def test_gpt2_uses_fc1_fc2():
    assert [g[0] for g in MODELS["GPT-2-Small"].layer_gemms()] == [
        "qkv_proj",
        "o_proj",
        "fc1",
        "fc2",
    ]


def test_kv_bytes_per_token():
    llama8 = MODELS["Llama-3.1-8B"]
    assert llama8.kv_bytes_per_token("bf16") == 32 * 2 * 8 * 128 * 2
    assert llama8.kv_bytes_per_token("fp8") == 32 * 2 * 8 * 128
    assert llama8.kv_bytes_per_token("bf16", tp=8) == 32 * 2 * 1 * 128 * 2
    assert llama8.kv_bytes_per_token("bf16", tp=16) == llama8.kv_bytes_per_token(
        "bf16", tp=8
    )  # replicated
    assert llama8.kv_bytes_per_token("bf16", pp=2) == 16 * 2 * 8 * 128 * 2
    assert MODELS["Llama-2-7B"].kv_bytes_per_token() == 512 * 1024  # MHA: 0.5 MiB per token


def test_weight_bytes():
    llama8 = MODELS["Llama-3.1-8B"]
    assert llama8.weight_bytes("bf16") == 2 * llama8.num_parameters
    assert llama8.weight_bytes("fp8") == llama8.num_parameters
    assert llama8.weight_bytes("auto") == 2 * llama8.num_parameters  # released in bf16
    assert MODELS["GPT-2-Small"].weight_bytes("auto") == 4 * MODELS["GPT-2-Small"].num_parameters
    assert MODELS["ResNet-50"].weight_bytes("fp32") == 4 * 25_557_032
    # TP 2 halves the sharded weights; norms (65 · 4096) are replicated on both GPUs
    assert llama8.weight_bytes("bf16", tp=2) == 2 * (
        (llama8.num_parameters - 65 * 4096) // 2 + 65 * 4096
    )


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(TRANSFORMERS), st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4]))
def test_sharding_never_loses_weights(spec, tp, pp):
    try:
        per_gpu = spec.parameters_per_gpu(tp, pp)
    except UsageError:
        return  # a shape not divisible by tp: refused with a message, covered below
    total = spec.num_parameters
    assert per_gpu * tp * pp >= total * 0.999  # vocabulary padding and replication only add
    assert per_gpu <= total
    if tp * pp > 1:
        assert per_gpu < total


def test_layers_per_stage():
    assert layers_per_stage(126, 4) == [32, 32, 31, 31]
    with pytest.raises(UsageError, match="pipeline parallelism"):
        layers_per_stage(12, 13)


def test_bad_parallelism_is_a_clear_error():
    with pytest.raises(
        UsageError, match="num_attention_heads 32 is not divisible by tensor parallelism 3"
    ):
        MODELS["Llama-3.1-8B"].layer_gemms(3)
    with pytest.raises(UsageError, match="CNN"):
        MODELS["ResNet-50"].kv_bytes_per_token()
    with pytest.raises(UsageError, match="unknown dtype 'fp12'"):
        MODELS["Llama-3.1-8B"].weight_bytes("fp12")


def test_flops_per_token():
    llama8 = MODELS["Llama-3.1-8B"]
    embedding = 128256 * 4096
    assert llama8.flops_per_token() == pytest.approx(
        2 * (llama8.num_parameters - embedding), rel=1e-3
    )
    assert llama8.flops_per_token(1000) - llama8.flops_per_token() == 4 * 32 * 32 * 128 * 1000
    assert (
        MODELS["Mixtral-8x7B"].flops_per_token() < 2 * MODELS["Mixtral-8x7B"].num_active_parameters
    )
    assert MODELS["ResNet-50"].flops_per_token() == pytest.approx(8.18e9, rel=0.01)
    assert MODELS["Llama-3.1-8B"].is_decoder and not MODELS["BERT-Base"].is_decoder


# -- user files ----------------------------------------------------------------------------------


def test_file_entry_wins_over_the_registry(llm_registry):
    db = {
        "my-7b": {
            "num_hidden_layers": 4,
            "hidden_size": 512,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "intermediate_size": 1024,
            "vocab_size": 1000,
        }
    }
    spec = resolve_model(ctx(llm_registry, db), "MY-7B")
    assert (spec.name, spec.num_layers, spec.head_dim, spec.mlp) == ("my-7b", 4, 64, "gated")


def test_sparse_file_entry_extends_the_registered_model(llm_registry):
    db = {"Llama3-8B": {"max_position_embeddings": 4096}}
    spec = resolve_model(ctx(llm_registry, db), "Llama3-8B")
    assert (
        spec.max_position_embeddings == 4096
        and spec.num_parameters == MODELS["Llama-3-8B"].num_parameters
    )
    db = {"Llama3-8B-deep": {"base_model": "Llama-3-8B", "num_layers": 40}}
    deeper = resolve_model(ctx(llm_registry, db), "llama3-8b-deep")
    assert deeper.num_layers == 40 and deeper.num_parameters > MODELS["Llama-3-8B"].num_parameters


def test_hf_config_json_is_understood():
    hf = {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "hidden_act": "silu",
        "use_sliding_window": False,
        "sliding_window": 131072,
        "max_position_embeddings": 131072,
    }
    spec = ModelSpec.from_dict(hf, "qwen-copy")
    assert (
        spec.num_parameters == MODELS["Qwen2.5-7B"].num_parameters
    )  # q/k/v biases implied by qwen2
    assert spec.dtype_default == "bf16" and spec.sliding_window is None
    gpt2 = {
        "model_type": "gpt2",
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_positions": 1024,
        "vocab_size": 50257,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
    }
    assert (
        ModelSpec.from_dict(gpt2, "gpt2-copy").num_parameters
        == MODELS["GPT-2-Small"].num_parameters
    )


def test_params_billion_derives_the_ffn_width():
    entry = {
        "n_layers": 32,
        "d_model": 4096,
        "n_heads": 32,
        "n_kv_heads": 8,
        "vocab_size": 128256,
        "params_billion": 8.03,
    }
    spec = ModelSpec.from_dict(entry, "guess")
    assert abs(spec.intermediate_size - 14336) < 20
    assert spec.num_parameters_reported == pytest.approx(8.03e9)


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 8},
            "model 'bad': field 'num_layers' is missing",
        ),
        (
            {"num_layers": "four", "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10},
            "field 'num_layers' must be a positive integer; got 'four'",
        ),
        (
            {"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10},
            "field 'intermediate_size' is missing",
        ),
        (
            {
                "num_layers": 2,
                "hidden_size": 64,
                "num_attention_heads": 4,
                "num_key_value_heads": 3,
                "vocab_size": 10,
                "intermediate_size": 8,
            },
            "'num_key_value_heads' 3 must divide",
        ),
        (
            {
                "num_layers": 2,
                "hidden_size": 64,
                "num_attention_heads": 4,
                "vocab_size": 10,
                "intermediate_size": 8,
                "mlp": "swiglu",
            },
            "field 'mlp' must be one of gated, standard",
        ),
        (
            {
                "num_layers": 2,
                "hidden_size": 64,
                "num_attention_heads": 4,
                "vocab_size": 10,
                "intermediate_size": 8,
                "torch_dtype": "float13",
            },
            "field 'dtype_default' must be one of",
        ),
    ],
)
def test_bad_fields_name_the_model_and_field(llm_registry, entry, message):
    with pytest.raises(UsageError, match="model_characteristics_db_path") as info:
        resolve_model(ctx(llm_registry, {"bad": entry}), "bad")
    assert message in str(info.value)


def test_unknown_model_lists_what_exists(llm_registry):
    with pytest.raises(UnknownNameError) as info:
        resolve_model(ctx(llm_registry, {"house-model": {}}), "Llama-3.1-8")
    text = str(info.value)
    assert (
        "No model named 'Llama-3.1-8'" in text and "house-model" in text and "Did you mean" in text
    )
