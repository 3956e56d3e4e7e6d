"""Every ``labsim`` command loads this plugin; its engine loads only when a job is planned."""

from __future__ import annotations

import subprocess
import sys

ENGINE = ("labsim_training.api", "labsim_training.engine", "labsim_training.plan",
          "labsim_training.network")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith('labsim_training')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(eval(out.stdout.strip().splitlines()[-1]))


def test_the_command_line_registers_the_frameworks_without_their_engine():
    loaded = _loaded_after("import labsim.cli\nfrom labsim.registry import get_registry\n"
                           "assert get_registry().has('frameworks', 'megatron')")
    assert "labsim_training.frameworks" in loaded
    assert not loaded & set(ENGINE)


def test_the_package_names_load_their_modules_on_first_use():
    import labsim_training

    assert labsim_training.estimate.__module__ == "labsim_training.api"
    assert labsim_training.make_layout.__module__ == "labsim_training.layout"
    assert set(labsim_training.__all__) <= set(dir(labsim_training)) | set(labsim_training._HOMES)
    try:
        labsim_training.no_such_name
    except AttributeError as ex:
        assert "no_such_name" in str(ex)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
