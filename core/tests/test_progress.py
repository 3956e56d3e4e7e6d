"""Progress bars: drawn for a person at a terminal, silent everywhere else, free in the loop."""

from __future__ import annotations

import pytest
import simpy
from labsim import progress


@pytest.fixture
def terminal(monkeypatch):
    """Pretend stdout and stderr are terminals, outside CI, with bars that appear at once."""
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


def test_wanted_only_on_a_terminal_outside_ci_and_without_quiet(terminal, monkeypatch):
    assert progress.wanted()
    progress.set_quiet(True)
    assert not progress.wanted() and progress.sim_bar(10, "x") is None
    progress.set_quiet(False)
    monkeypatch.setenv("CI", "true")
    assert not progress.wanted()


def test_not_wanted_in_a_pipe(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert not progress.wanted()       # pytest's captured streams are not terminals
    assert not progress._on_terminal()


def _clock_env(n_events):
    env = simpy.Environment()

    def ticker():
        for _ in range(n_events):
            yield env.timeout(1.0)

    env.process(ticker())
    return env


def test_run_events_moves_the_bar_every_n_events_and_stops_at_the_limit(terminal, capsys):
    env = _clock_env(10_000)
    bar = progress.sim_bar(5_000.0, "demo")
    progress.run_events(env, limit=5_000.0, bar=bar, every=1_000)
    assert env.now == 5_000.0 and env.peek() > 5_000.0
    text = capsys.readouterr().err
    assert "demo" in text and "simulated" in text and "ETA" in text and "wall" in text


def _traced_env(env_class=simpy.Environment):
    """An environment whose processes log (time, name) as they run: two interleaved tickers,
    timeouts at equal instants (SimPy's insertion order decides) and a callback event."""
    env = env_class()
    log = []

    def ticker(name, gap, n):
        for _ in range(n):
            yield env.timeout(gap)
            log.append((env.now, name))

    env.process(ticker("a", 0.5, 40))
    env.process(ticker("b", 1.0, 20))
    env.timeout(3.0).callbacks.append(lambda _e: log.append((env.now, "callback")))
    return env, log


def test_run_events_steps_as_simpy_does():
    """run_events, without a bar, steps a plain SimPy environment itself (SimPy's ``step``
    inlined): the same events in the same order, stopping at the same instant, as calling
    ``env.step()`` while ``env.peek() <= limit``; a subclass of its own keeps its ``step``."""
    for limit in (0.0, 7.25, 12.0, 100.0):
        env, log = _traced_env()
        assert progress._plain_simpy(env)
        progress.run_events(env, limit)
        ref, ref_log = _traced_env()
        while ref.peek() <= limit:
            ref.step()
        assert log == ref_log and env.now == ref.now and env.peek() == ref.peek()

    stepped = []

    class Counting(simpy.Environment):
        def step(self):
            stepped.append(self.peek())
            super().step()

    env, log = _traced_env(Counting)
    assert not progress._plain_simpy(env)
    progress.run_events(env, 5.0)
    assert len(stepped) == len(log) + 2      # (and the two processes' start events)

    def patched(self):                       # a test that counts SimPy's steps, say
        stepped.append(self.peek())
        original(self)

    original = simpy.Environment.step
    stepped.clear()
    simpy.Environment.step = patched
    try:
        env, log = _traced_env()
        assert not progress._plain_simpy(env)
        progress.run_events(env, 5.0)
    finally:
        simpy.Environment.step = original
    assert len(stepped) == len(log) + 2


def test_run_events_raises_a_failed_event_as_simpy_does():
    """A process that fails and nobody waits for crashes the run with its exception, as
    ``env.step()`` raises it; with nothing left to do and no limit, EmptySchedule."""
    env = simpy.Environment()

    def broken():
        yield env.timeout(1.0)
        raise ValueError("bad input")

    env.process(broken())
    with pytest.raises(ValueError, match="bad input") as raised:
        progress.run_events(env, 10.0)
    assert isinstance(raised.value.__cause__, ValueError) and env.now == 1.0
    env = _clock_env(3)
    with pytest.raises(simpy.core.EmptySchedule):
        progress.run_events(env, float("inf"))
    assert env.now == 3.0


def test_a_run_with_a_bar_gives_the_same_summary(terminal, tmp_path):
    import labsim
    from labsim.orchestrator import Orchestrator, load_experiment

    exp = {
        "name": "bar",
        "simulation": {"max_simulation_time": 100, "random_seed": 1},
        "hardware_profile": {"device": "H100-SXM"},
        "workload": {"total_duration": 10, "client_profiles": [{
            "profile_name": "c", "request_rate": 5,
            "prompt_tokens_dist_config": {"type": "Constant", "value": 100},
            "max_output_tokens_dist_config": {"type": "Constant", "value": 50}}]},
        "frameworks_to_test": [{"name": "vllm", "type": "vllm",
                                "config": {"model": "Llama-3.1-8B"}}],
    }
    try:
        import labsim_vllm  # noqa: F401
    except ImportError:
        pytest.skip("labsim-vllm is not installed")
    plain = labsim.run(exp).summary
    orchestrator = Orchestrator(load_experiment(exp))
    orchestrator.show_progress = True
    with_bar = orchestrator.run(None, write_files=False).summary
    assert with_bar["frameworks"] == plain["frameworks"]


def test_a_run_outlasting_its_workload_grows_the_bar_up_to_the_limit(terminal):
    bar = progress.sim_bar(100.0, "drain", limit_s=300.0)
    bar.set(150.0)
    assert bar._bar.total == pytest.approx(187.5) and bar._bar.n == 150.0
    bar.set(290.0)
    assert bar._bar.total == 300.0
    bar.set(400.0)
    assert bar._bar.n == 300.0
    bar.close()


def test_the_global_quiet_option_turns_bars_off(terminal):
    from click.testing import CliRunner
    from labsim.cli import cli

    assert progress.wanted()
    result = CliRunner().invoke(cli, ["--quiet", "schema", "summary"])
    assert result.exit_code == 0, result.output
    assert not progress.wanted()
