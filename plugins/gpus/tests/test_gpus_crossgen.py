"""GPUs known only by their datasheet: the cross-generation profile, its fit and who gets it."""

from __future__ import annotations

import labsim_gpus.plugin as plugin
import pytest
from labsim.errors import UsageError
from labsim_gpus import crossgen
from labsim_gpus.calibrate import Point, predict_point
from labsim_gpus.params import DATASHEET_DEFAULTS
from labsim_gpus.profiles import check_profile, shipped_profile
from labsim_gpus.spec import customize

#: a Hopper-class GPU the catalog lacks (an H20-like part: few SMs, much bandwidth)
NEW_HOPPER = {"peak_tflops": {"bf16": 148}, "memory_gbps": 4000, "processing_units": 78,
              "memory_capacity_bytes": 96 * 2**30}
#: a GPU of no generation labsim has measured
NEW_GPU = {"peak_tflops": {"bf16": 1500}, "memory_gbps": 6000, "processing_units": 160}


def _points(gpu, params, harness_overhead=0.0):
    """Kernels priced by the model itself with known parameters (one table)."""
    points = []
    for m in (1, 16, 128, 1024, 4096):
        for n, k in ((4096, 4096), (14336, 4096), (1024, 8192)):
            shape = (m, n, k, "bf16")
            points.append(Point("gemm", shape, 0.0, "x"))
    for b in (1, 8, 64):
        for s in (256, 2048, 8192):
            points.append(Point("prefill", (b, s, 32, 8, 128, "bf16"), 0.0, "x"))
            points.append(Point("decode", (b, s, 32, 8, 128, "bf16"), 0.0, "x"))
    return tuple(Point(p.family, p.shape, predict_point(p, gpu, params) + harness_overhead, "x")
                 for p in points)


def test_a_pooled_fit_predicts_a_gpu_it_never_saw():
    truth = DATASHEET_DEFAULTS.replace(gemm_compute_eff=0.72, gemm_mem_eff=0.8, smooth_p=3.5,
                                       decode_mem_eff=0.9, attn_compute_eff=0.55,
                                       prefill_cta_s=3e-6)
    bpf = 0.02
    gpus = [plugin.preset(n) for n in ("A100-SXM4-80GB", "H100-SXM", "H200-SXM")]
    tables = [crossgen.Table(g.name, g.name, g, _points(g, crossgen.params_for(g, truth, bpf)))
              for g in gpus[:2]]
    fit = crossgen.fit_pooled(tables, iters=120)
    assert fit.onchip_bytes_per_flop == pytest.approx(bpf, rel=0.25)
    unseen = crossgen.Table("H200-SXM", "H200", gpus[2],
                            _points(gpus[2], crossgen.params_for(gpus[2], truth, bpf)))
    errors = crossgen.errors_by_family(unseen, crossgen.params_for(gpus[2], fit.params,
                                                                   fit.onchip_bytes_per_flop))
    assert {f: e[1] for f, e in errors.items()} == {
        "gemm": pytest.approx(0, abs=3), "prefill": pytest.approx(0, abs=3),
        "decode": pytest.approx(0, abs=3)}


def test_a_pooled_share_stays_within_every_gpus_per_sm_draw():
    """One sm_bw_share prices every GPU of a pooled fit: tables made with a share of 40 give
    at most what the GPU with the lowest bound allows (the H200: 124 GB/s x 132 / 4.8 TB/s)."""
    truth = DATASHEET_DEFAULTS.replace(sm_bw_share=40.0)
    gpus = [plugin.preset(n) for n in ("A100-SXM4-80GB", "H200-SXM")]
    tables = [crossgen.Table(g.name, g.name, g, _points(g, crossgen.params_for(g, truth, 0.02)))
              for g in gpus]
    assert crossgen.pooled_share_bounds(tables)[1] == pytest.approx(gpus[1].sm_bw_share_max)
    fit = crossgen.fit_pooled(tables, iters=60, start=truth)
    assert 1.0 <= fit.params.sm_bw_share <= min(g.sm_bw_share_max for g in gpus)


def test_a_share_beyond_its_bounds_is_priced_at_the_bound():
    """The simplex may step past the share's bounds: such a point is priced with the share at
    the bound, not refused with an infinite loss. Before, a simplex started at the lower bound
    (1) met a wall there and stalled above it: without the A100 the decode stage stopped at a
    share of 2.3, its training loss 9 % above that at the bound."""
    import math

    import numpy as np

    truth = DATASHEET_DEFAULTS.replace(decode_mem_eff=0.92, decode_cta_s=3e-6)
    gpus = [plugin.preset(n) for n in ("A100-SXM4-80GB", "H100-SXM")]
    tables = [crossgen.Table(g.name, g.name, g, _points(g, crossgen.params_for(g, truth, 0.02)))
              for g in gpus]
    bounds = crossgen.pooled_share_bounds(tables)
    stage = crossgen._Stage(tables, ("decode",), ("decode_mem_eff", "sm_bw_share"),
                            [crossgen.ENGINE_HARNESS], bounds)
    state = (truth, 0.02, {crossgen.ENGINE_HARNESS: {n: getattr(truth, n)
                                                       for n in crossgen.HARNESS_PARAMS}})
    at_bound = stage.loss(np.log([0.92, bounds[0]]), state)
    below = stage.loss(np.log([0.92, 0.5 * bounds[0]]), state)
    above = stage.loss(np.log([0.92, 2.0 * bounds[1]]), state)
    assert math.isfinite(below) and below == at_bound
    assert above == stage.loss(np.log([0.92, bounds[1]]), state)
    assert stage.unpack(np.log([0.92, 0.5]), state)[0].sm_bw_share == bounds[0]


def test_the_per_cta_prefill_cost_is_fitted_from_batches_of_short_sequences():
    """Tables with a fixed cost per prefill CTA give it back, and a fit without the term
    (the datasheet model's 0) misses the many-short-sequence batches that show it."""
    truth = DATASHEET_DEFAULTS.replace(prefill_cta_s=4e-6)
    gpus = [plugin.preset(n) for n in ("A100-SXM4-80GB", "H100-SXM")]
    tables = [crossgen.Table(g.name, g.name, g, _points(g, crossgen.params_for(g, truth, 0.02)))
              for g in gpus]
    fit = crossgen.fit_pooled(tables, iters=120)
    assert fit.params.prefill_cta_s == pytest.approx(4e-6, rel=0.1)
    many_short = Point("prefill", (256, 64, 32, 8, 128, "bf16"), 0.0, "x")
    a100 = gpus[0]
    measured = predict_point(many_short, a100, crossgen.params_for(a100, truth, 0.02))
    without = predict_point(many_short, a100, crossgen.params_for(
        a100, fit.params.replace(prefill_cta_s=0.0), fit.onchip_bytes_per_flop))
    assert without < 0.8 * measured


def test_the_joint_stage_keeps_the_best_of_its_starts_within_bounds():
    """The joint stage refits every parameter from the staged result and perturbed starts:
    no start ends outside the share bounds, and the one of lowest loss wins."""
    truth = DATASHEET_DEFAULTS.replace(sm_bw_share=40.0, decode_mem_eff=0.85)
    gpus = [plugin.preset(n) for n in ("A100-SXM4-80GB", "H200-SXM")]
    tables = [crossgen.Table(g.name, g.name, g, _points(g, crossgen.params_for(g, truth, 0.02)))
              for g in gpus]
    fit = crossgen.fit_pooled(tables, iters=40, joint_starts=2, joint_iters=40)
    assert len(fit.starts) == 2 and fit.loss == min(f.loss for f in fit.starts)
    assert fit.starts[0].params != fit.starts[1].params
    high = crossgen.pooled_share_bounds(tables)[1]
    assert all(1.0 <= f.params.sm_bw_share <= high for f in fit.starts)


def test_overheads_come_from_the_fastest_rows():
    """Rows above 100 us run 25 % slower than the model can say (a kernel switch): fitted on
    every row, the fixed attention cost trades against them; fitted on the fastest rows (the
    default), each overhead is the true one."""
    truth = DATASHEET_DEFAULTS.replace(kernel_overhead_s=4e-6, attn_overhead_s=8e-6)
    tables = []
    for name in ("A100-SXM4-80GB", "H100-SXM"):
        gpu = plugin.preset(name)
        rows = _points(gpu, crossgen.params_for(gpu, truth, 0.02))
        rows = tuple(Point(p.family, p.shape, p.seconds * (1.25 if p.seconds > 1e-4 else 1.0),
                           "x") for p in rows)
        tables.append(crossgen.Table(name, name, gpu, rows))
    heads = crossgen.fit_pooled(tables, iters=120).overheads["aisimulate"]
    assert heads == {"kernel_overhead_s": pytest.approx(4e-6, rel=0.02),
                     "attn_overhead_s": pytest.approx(8e-6, rel=0.02)}
    mixed = crossgen.fit_pooled(tables, iters=120, overheads_from_smallest=False)
    assert mixed.overheads["aisimulate"]["attn_overhead_s"] < 0.95 * 8e-6


def test_overheads_are_fitted_per_harness():
    truth = DATASHEET_DEFAULTS
    a100, h100 = plugin.preset("A100-SXM4-80GB"), plugin.preset("H100-SXM")
    tables = [crossgen.Table("A100", "a", a100, _points(a100, crossgen.params_for(a100, truth, 0.02))),
              crossgen.Table("H100", "h", h100, _points(h100, crossgen.params_for(h100, truth, 0.02),
                                                        harness_overhead=6e-6), harness="slow")]
    fit = crossgen.fit_pooled(tables, iters=120)
    fast, slow = fit.overheads[crossgen.ENGINE_HARNESS], fit.overheads["slow"]
    assert slow["kernel_overhead_s"] > fast["kernel_overhead_s"] + 3e-6
    # the shipped parameters carry the engine harness's overheads, not the slow table's
    assert fit.params.kernel_overhead_s == fast["kernel_overhead_s"]


def test_attention_kernel_parameters_are_fitted_per_harness():
    """A harness whose prefill kernels reach a third of the engines' fraction of peak and whose
    decode pays more per CTA (Vidur's paged-KV wrapper) gets its own values; the engine
    harness's, which the shipped parameters carry, stay the engines'. Before, one shared
    efficiency priced both and missed the slow harness's prefill by ~60 %."""
    engine = DATASHEET_DEFAULTS.replace(attn_compute_eff=0.6, decode_cta_s=3e-6)
    slow = engine.replace(attn_compute_eff=0.2, decode_cta_s=9e-6)
    a100, h100 = plugin.preset("A100-SXM4-80GB"), plugin.preset("H100-SXM")
    tables = [crossgen.Table("A100", "a", a100, _points(a100, crossgen.params_for(a100, engine, 0.02))),
              crossgen.Table("H100", "h", h100, _points(h100, crossgen.params_for(h100, engine, 0.02))),
              crossgen.Table("A100", "v", a100, _points(a100, crossgen.params_for(a100, slow, 0.02)),
                             harness="vidur")]
    fit = crossgen.fit_pooled(tables, iters=120)
    kernel = fit.kernel_params
    assert kernel["vidur"]["attn_compute_eff"] == pytest.approx(0.2, rel=0.1)
    assert kernel[crossgen.ENGINE_HARNESS]["attn_compute_eff"] == pytest.approx(0.6, rel=0.1)
    assert kernel["vidur"]["decode_cta_s"] > 2 * kernel[crossgen.ENGINE_HARNESS]["decode_cta_s"]
    assert fit.params.attn_compute_eff == kernel[crossgen.ENGINE_HARNESS]["attn_compute_eff"]
    errors = crossgen.errors_by_family(tables[2], fit.for_table(tables[2]))
    assert errors["prefill"][1] < 5 and errors["decode"][1] < 5


def test_a_harness_that_measured_no_attention_takes_the_engines_kernel_parameters():
    """A harness with GEMM rows only has nothing to fit attention parameters on: its tables are
    priced with the engine harness's, not with the fit's starting values."""
    truth = DATASHEET_DEFAULTS.replace(attn_compute_eff=0.6)
    a100, h100 = plugin.preset("A100-SXM4-80GB"), plugin.preset("H100-SXM")
    gemms = tuple(p for p in _points(h100, crossgen.params_for(h100, truth, 0.02))
                  if p.family == "gemm")
    tables = [crossgen.Table("A100", "a", a100, _points(a100, crossgen.params_for(a100, truth, 0.02))),
              crossgen.Table("H100", "g", h100, gemms, harness="gemm-only")]
    fit = crossgen.fit_pooled(tables, iters=80, start=DATASHEET_DEFAULTS.replace(attn_compute_eff=0.3))
    assert fit.kernel_params["gemm-only"] == fit.kernel_params[crossgen.ENGINE_HARNESS]


def test_rows_faster_than_the_datasheet_allows_are_left_out():
    """Vidur's A30 profile times the QKV projection of 2,016 tokens at 1.8 us (37 PFLOP/s on a
    165 TFLOP/s GPU): such a row is a timer that caught part of the work, not a kernel."""
    a100 = plugin.preset("A100-SXM4-80GB")
    flops = 2.0 * 2016 * 4608 * 3584
    honest = Point("gemm", (2016, 4608, 3584, "fp16"), 1.2 * flops / 312e12, "x")
    broken = Point("gemm", (2016, 4608, 3584, "fp16"), 1.8e-6, "x")
    tiny = Point("gemm", (1, 4096, 4096, "fp16"), 0.9 * 2 * 4096 * 4096 / a100.mem_bw, "x")
    attention = Point("decode", (1, 256, 32, 8, 128, "bf16"), 1e-9, "x")
    assert crossgen.roofline_seconds(honest, a100) == pytest.approx(flops / 312e12)
    assert crossgen.physical_points((honest, broken, tiny, attention), a100) == (honest, attention)


def test_a_datasheet_gpu_of_no_measured_generation_gets_the_cross_generation_profile():
    gpu = customize(plugin.preset("GPU"), NEW_GPU)
    data = shipped_profile(crossgen.PROFILE_FILE)
    assert gpu.pricing() == {"name": "GPU", "profile": "cross_generation", "how": "datasheet-only"}
    assert gpu.params.decode_mem_eff == data["params"]["decode_mem_eff"]
    # its on-chip feed follows its own datasheet, not the A100's ratio
    assert gpu.params.onchip_bw_ratio == pytest.approx(
        data["carried"]["onchip_bytes_per_flop"] * 1500e12 / 6000e9)
    blackwell = customize(plugin.preset("GPU"), {**NEW_GPU, "arch": "blackwell"})
    assert blackwell.pricing()["profile"] == "cross_generation" and blackwell.arch == "blackwell"


def test_a_datasheet_gpu_of_a_measured_generation_gets_that_generations_calibration():
    # Before: `arch: hopper` on an inline GPU kept the generic GPU's A100 parameters.
    gpu = customize(plugin.preset("GPU"), {**NEW_HOPPER, "arch": "hopper"})
    h100 = plugin.preset("H100-SXM")
    assert gpu.pricing() == {"name": "GPU", "profile": "h100_sxm", "how": "datasheet-only"}
    # the same parameters, but no SM draws more than its own (78 SMs share 4 TB/s)
    assert gpu.params == h100.params.replace(
        sm_bw_share=min(h100.params.sm_bw_share, gpu.sm_bw_share_max))
    assert (gpu.sm_count, gpu.mem_bw) == (78, 4000e9)       # its own figures
    assert gpu.arch == "hopper"


def test_cost_params_still_apply_on_top_of_the_datasheet_profile():
    gpu = customize(plugin.preset("GPU"), {**NEW_GPU, "cost_params": {"decode_mem_eff": 0.5}})
    assert gpu.params.decode_mem_eff == 0.5
    assert gpu.pricing()["profile"] == "cross_generation"


def test_a_datasheet_h100_lands_near_the_calibrated_one():
    """The H100 written with other figures than the catalog's (so not matched) is priced by the
    cross-generation profile: its decode-step kernels land within 15 % of the calibrated H100."""
    gpu = customize(plugin.preset("GPU"), {"peak_tflops": {"bf16": 900}, "memory_gbps": 3000,
                                           "processing_units": 132})
    h100 = plugin.preset("H100-SXM").customize({"memory_gbps": 3000,
                                               "peak_tflops": {"bf16": 900}})
    assert gpu.pricing()["how"] == "datasheet-only"
    for m in (1, 64, 256):
        assert gpu.gemm_time(m, 4096, 14336) == pytest.approx(h100.gemm_time(m, 4096, 14336),
                                                              rel=0.15)
    kw = dict(batch_size=64, seq_len=2048, num_heads=32, num_kv_heads=8, head_dim=128)
    assert gpu.attention_time("decode", **kw) == pytest.approx(h100.attention_time("decode", **kw),
                                                               rel=0.15)


def test_the_shipped_profile_says_how_it_was_fitted_and_how_well_it_transfers():
    data = shipped_profile(crossgen.PROFILE_FILE)
    assert data["arch"] == "" and set(data["archs"]) == {"ampere", "hopper"}
    assert "fidelity_kernels.py --fit-cross-generation" in data["command"]
    loo = data["errors"]["leave_one_gpu_out"]
    assert set(loo) == {"gemm", "prefill", "decode"}
    assert set(data["errors"]["by_gpu"]) == {"A100-SXM4-80GB", "A30", "A40", "H100-SXM", "H200-SXM"}
    # the per-harness kernel parameters ship too; the priced ones are the engine harness's
    engine = data["harness_kernel_params"][crossgen.ENGINE_HARNESS]
    assert set(engine) == set(crossgen.HARNESS_KERNEL_PARAMS)
    assert all(data["params"][n] == v for n, v in engine.items())


@pytest.mark.parametrize("carried", [{"onchip_bytes_per_flop": -1}, {"other": 1}, [1],
                                     {"onchip_bytes_per_flop": True}])
def test_a_profile_with_bad_carried_figures_is_refused(carried):
    data = {**shipped_profile(crossgen.PROFILE_FILE), "carried": carried}
    with pytest.raises(UsageError, match="carried"):
        check_profile(data)


def test_a_profile_may_hold_no_prefill_cta_cost_but_not_a_negative_one():
    """`labsim calibrate` writes every parameter, prefill_cta_s as its default 0 (it does not
    fit it): such a profile loads; a negative cost does not."""
    data = shipped_profile(crossgen.PROFILE_FILE)
    check_profile({**data, "params": {**data["params"], "prefill_cta_s": 0.0}})
    with pytest.raises(UsageError, match="prefill_cta_s"):
        check_profile({**data, "params": {**data["params"], "prefill_cta_s": -1e-6}})
    with pytest.raises(UsageError, match="decode_cta_s"):
        check_profile({**data, "params": {**data["params"], "decode_cta_s": 0.0}})


def test_an_experiment_may_set_the_prefill_cta_cost_to_none():
    """Every parameter of a profile given as cost_params (fidelity_datasheet_serving.py does)
    passes the experiment schema, prefill_cta_s = 0 among them; decode_cta_s = 0 does not."""
    import jsonschema
    from labsim_gpus.spec import CONFIG_SCHEMA

    every = DATASHEET_DEFAULTS.as_dict()
    jsonschema.validate({"cost_params": every}, CONFIG_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cost_params": {**every, "decode_cta_s": 0.0}}, CONFIG_SCHEMA)
    gpu = customize(plugin.preset("GPU"), {**NEW_GPU, "cost_params": {"prefill_cta_s": 0.0}})
    assert gpu.params.prefill_cta_s == 0.0
