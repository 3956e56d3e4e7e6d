"""Reports as a person sees them: each kind of page (runs, sweeps' siblings: searches, scaling
studies, sharing-mode comparisons) opened in headless Chromium with the network off, no console message, and a screenshot with plots drawn on it (not a blank page).

Needs Debian's ``chromium`` (``apt-get install chromium``); ``.ci/run`` installs it and sets
``LABSIM_REQUIRE_BROWSER=1`` so that CI fails rather than skips without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from labsim.cli import cli

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("LABSIM_REQUIRE_BROWSER") != "1":
    pytest.skip("headless Chromium is not installed (apt-get install chromium)", allow_module_level=True)

#: Chromium with no network: names resolve nowhere and any connection goes to a closed port
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,2400", "--hide-scrollbars")


def screenshot(page: Path, tmp_path: Path):
    """(the screenshot as an RGB array, the console messages) of *page* in headless Chromium."""
    shot = tmp_path / f"{page.stem}.png"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           f"--screenshot={shot}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), proc.stderr[-2000:]
    import matplotlib.image

    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return matplotlib.image.imread(shot)[..., :3], console


def drawn_pixels(image: np.ndarray) -> int:
    """Pixels of a saturated colour: plot lines, markers and bars (text and rules are grey)."""
    return int(((image.max(axis=2) - image.min(axis=2)) > 0.25).sum())


def _cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _run_report(tmp_path, example, *sets):
    out = tmp_path / Path(example).stem
    args = ["run", ROOT / "examples" / example, "--out", out, "--report"]
    for s in sets:
        args += ["--set", s]
    _cli(*args)
    return out / "report.html"


#: settings that keep an example's run short here (its page draws the same kinds of plot)
SHORTER = {"cluster_gavel_philly.yaml": (
    'frameworks_to_test=[{"name": "fifo", "type": "cluster", "config": {"scheduler": {"type": "fifo"}}},'
    ' {"name": "tiresias", "type": "cluster", "config": {"scheduler": {"type": "tiresias"}}}]',)}


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")))
def test_every_example_report_shows_its_plots_offline(tmp_path, example):
    image, console = screenshot(_run_report(tmp_path, example, *SHORTER.get(example, ())), tmp_path)
    assert console == []
    assert drawn_pixels(image) > 1000, "the page shows no drawn plot"


@pytest.mark.parametrize("example, sets", [
    ("quickstart.yaml", ("workload.total_duration=10", "frameworks_to_test.0.config.record_steps=true")),
    ("training_small_4gpu.yaml", ("frameworks_to_test.0.config.record_timeline=true",)),
    ("cluster_tiresias_60jobs.yaml", ("workload.time_scale=0.01", "frameworks_to_test.0.config.record_usage=true")),
    ("sharing_two_chat_servers.yaml", ("workload.total_duration=10", "hardware_profile.sharing.record_timeline=true")),
])
def test_a_run_report_with_every_table_recorded_shows_its_plots_offline(tmp_path, example, sets):
    image, console = screenshot(_run_report(tmp_path, example, *sets), tmp_path)
    assert console == []
    assert drawn_pixels(image) > 1000, "the page shows no drawn plot"


def test_a_search_report_shows_its_plots_offline(tmp_path):
    out = tmp_path / "search.json"
    _cli("search", ROOT / "examples" / "search_llama8b_chat.yaml", "--slo", "ttft_ms.p99<=1000",
         "--devices", "H100-SXM,A100-SXM4-80GB", "--frameworks", "vllm", "--precision", "0.3",
         "--set", "workload.total_duration=20", "--workers", "1", "--json", out)
    _cli("report", out)
    image, console = screenshot(tmp_path / "search.html", tmp_path)
    assert console == [] and drawn_pixels(image) > 1000


def test_study_and_comparison_reports_show_their_plots_offline(tmp_path):
    _cli("scale", ROOT / "examples" / "training_medium_32gpu.yaml", "--gpus", "8", "32", "--json",
         tmp_path / "scale.json")
    _cli("sharing", ROOT / "examples" / "sharing_two_chat_servers.yaml", "--modes", "mps,mig",
         "--set", "workload.total_duration=10", "--json", tmp_path / "modes.json")
    for name in ("scale", "modes"):
        _cli("report", tmp_path / f"{name}.json")
        image, console = screenshot(tmp_path / f"{name}.html", tmp_path)
        assert console == [] and drawn_pixels(image) > 1000, name


def test_the_checks_catch_a_blank_page_and_a_console_error(tmp_path):
    """The checks themselves: a page without plots has (almost) no drawn pixels, and a script
    error reaches the console list."""
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body><h1>nothing drawn</h1><p>text</p></body></html>")
    image, console = screenshot(page, tmp_path)
    assert console == [] and drawn_pixels(image) < 100
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    _, console = screenshot(broken, tmp_path)
    assert any("undefinedFunction" in line for line in console)
