"""The command line runs numpy's BLAS on one thread (unless the user chose a count); the
Python API leaves the process's settings alone (:mod:`labsim.numeric_threads`)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = ("import sys, os\n"
         "import {module}\n"
         "print('numpy' in sys.modules, os.environ.get('OPENBLAS_NUM_THREADS'))\n")


def _probe(module: str, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True,
                         text=True, env={**environ, **env}, check=True)
    return out.stdout.strip()


def test_the_command_line_asks_for_one_blas_thread_before_numpy_loads():
    # labsim.cli has loaded every plugin (numpy with them) by the time the probe prints
    assert _probe("labsim.cli") == "True 1"


def test_a_thread_count_the_user_set_is_kept():
    assert _probe("labsim.cli", OPENBLAS_NUM_THREADS="3") == "True 3"


def test_importing_labsim_neither_loads_numpy_nor_sets_threads():
    assert _probe("labsim") == "False None"


def test_labsim_run_and_result_are_still_there():
    import labsim
    from labsim import Result, run
    from labsim.orchestrator import Result as R, run as r

    assert (run, Result) == (r, R) == (labsim.run, labsim.Result)
    assert "run" in labsim.__all__


def test_a_ray_sweep_ships_one_blas_thread_to_its_workers(tmp_path, monkeypatch):
    """Each Ray run holds one CPU: its worker process, on any node, gets the command line's
    setting (or the count the user set) through the job's runtime environment."""
    from labsim.sweep import ray_runs

    exp = tmp_path / "e.yaml"
    exp.write_text("name: e\nhardware_profile: {device: H100-SXM}\n"
                   "workload: {type: client_profiles, num_requests: 4, client_profiles: "
                   "[{profile_name: a, request_rate: 4, "
                   "prompt_tokens_dist_config: {type: Constant, value: 64, is_int: true}, "
                   "max_output_tokens_dist_config: {type: Constant, value: 8, is_int: true}}]}\n"
                   "frameworks_to_test: [{name: v, type: vllm, config: {model: Llama-3.1-8B}}]\n")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    runtime_env, runs = ray_runs(str(exp), [], [("k", [])], None)
    assert runtime_env["env_vars"] == {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "2"}
    assert runtime_env["working_dir"] == str(tmp_path) and len(runs) == 1


def test_submodules_are_still_attributes_of_the_package():
    """``import labsim`` then ``labsim.orchestrator.load_experiment``, as before numpy's import
    moved out of ``labsim/__init__``; a name that is neither still raises AttributeError."""
    out = subprocess.run([sys.executable, "-c",
                          "import labsim\n"
                          "print(labsim.orchestrator.load_experiment.__name__)\n"
                          "try:\n    labsim.no_such_thing\nexcept AttributeError as ex:\n    print(ex)\n"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["load_experiment",
                                       "module 'labsim' has no attribute 'no_such_thing'"]
