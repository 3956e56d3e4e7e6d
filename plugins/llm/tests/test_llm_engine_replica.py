"""The replica shell: submit and wake, the default step loop, finishing, the GPU seam, the cache."""

from __future__ import annotations

from types import SimpleNamespace

import simpy
from labsim_llm.engine.kv_cache import BlockPool
from labsim_llm.engine.replica import ReplicaShell
from labsim_llm.request import Request


class _Metrics:
    warm_up = 0.0

    def __init__(self):
        self.done = []

    def request_done(self, req):
        self.done.append(req)


def _owner(env):
    left = []
    return SimpleNamespace(context=SimpleNamespace(env=env), metrics=_Metrics(),
                           frontend=SimpleNamespace(after_first_token_s=0.0),
                           request_left=left.append, left=left)


class OneAtATime(ReplicaShell):
    """A toy engine on the default loop: one step per request, 1 ms per output token."""

    def schedule(self):
        return self.waiting.popleft()

    def step_seconds(self, seq):
        return 1e-3 * seq.req.output_tokens

    def commit(self, seq, start, end):
        self.emit_token(seq, end, first=True)
        self.report(seq.req, end)


def _request(i, arrival, out=10, segments=None):
    return Request(request_id=i, arrival_s=arrival, prompt_tokens=64, max_output_tokens=out,
                   output_tokens=out, segments=segments or ((i, 64),))


def _feed(env, replica, requests):
    def go():
        for r in requests:
            yield env.timeout(r.arrival_s - env.now)
            replica.submit(r)
    env.process(go())


def test_default_loop_serves_reports_and_tells_the_framework():
    env = simpy.Environment()
    owner = _owner(env)
    replica = OneAtATime(owner, 0)
    replica.start()
    reqs = [_request(0, 0.0), _request(1, 0.001), _request(2, 0.5)]
    _feed(env, replica, reqs)
    env.run()
    assert [r.finish_s for r in reqs] == [0.01, 0.02, 0.51]   # queued behind, then idle until 0.5
    assert all(r.status == "finished" for r in reqs)
    assert owner.metrics.done == reqs and owner.left == reqs    # metrics, and notify_finished
    assert replica.outstanding == 0 and replica.pending() == []


def test_every_second_of_gpu_time_passes_through_gpu_work():
    class Slow(OneAtATime):
        def gpu_work(self, seconds, step=None):
            done = self.env.now + 2 * seconds             # e.g. a GPU shared by two
            return self.env.timeout(2 * seconds, value=done)

    env = simpy.Environment()
    replica = Slow(_owner(env), 0)
    replica.start()
    req = _request(0, 0.0)
    _feed(env, replica, [req])
    env.run()
    assert req.finish_s == 0.02


def test_freeing_a_deferred_request_keeps_its_prompt_blocks_cached():
    """A finished request whose cache registration was still deferred leaves its prompt
    blocks matchable (a later turn hits them); freeing them as anonymous blocks lost them."""
    env = simpy.Environment()
    replica = OneAtATime(_owner(env), 0, BlockPool(16, block_size=16))
    seq = replica.new_seq(_request(0, 0.0, segments=((5, 64),)))
    hits = replica.cache_hits(seq, 64)
    assert hits == [] and len(seq.keys) == 4
    replica.pool.allocate(4)
    seq.held = 4
    seq.dref = replica.pool.defer(seq.keys, seq.hashed)
    replica.register_prompt(seq, 64)                         # deferred: only counted
    replica.free_blocks(seq)
    assert seq.held == 0 and seq.dref is None and replica.pool.num_free == 16
    again = replica.new_seq(_request(1, 0.0, segments=((5, 64),)))
    assert len(replica.cache_hits(again, 64)) == 3               # all but the last token's block
    replica.pool.check()


def test_engine_times_are_none_until_an_engine_sets_them():
    """They defaulted to NaN, so a plugin's ``if r.first_token_s is None`` never fired and its
    latencies came out empty."""
    import math

    class SetsFirstTokenOnce(OneAtATime):
        def commit(self, seq, start, end):
            if seq.req.first_token_s is None:
                seq.req.first_token_s = end
            self.report(seq.req, end)

    req = _request(0, 0.0)
    assert req.first_scheduled_s is None and req.first_token_s is None and req.finish_s is None
    assert math.isnan(req.ttft_s) and math.isnan(req.e2e_s)
    env = simpy.Environment()
    replica = SetsFirstTokenOnce(_owner(env), 0)
    replica.start()
    _feed(env, replica, [req])
    env.run()
    assert req.first_token_s == 0.01 and req.ttft_s == 0.01
