"""The paged KV cache: prefix keys, LRU free queue, reference counts, capacity invariants."""

from hypothesis import given, settings
from hypothesis import strategies as st
from labsim_llm.engine.kv_cache import _M64, _MIX, BlockPool, block_ids, block_keys


def test_block_keys_share_only_equal_prefixes():
    a = block_keys(((1, 40), (2, 40)), 16)
    b = block_keys(((1, 40), (3, 40)), 16)
    assert len(a) == 5  # 80 tokens → 5 full blocks
    assert a[:2] == b[:2]  # the first 32 tokens lie inside segment 1
    assert a[2] != b[2]  # block 3 spans into the differing segment


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(0, 9), st.integers(2**64 - 2, 2**64 + 1), st.just(-3)),
                          st.integers(1, 70)), min_size=1, max_size=4),
       st.sampled_from([1, 8, 16]), st.one_of(st.none(), st.integers(0, 12)))
def test_block_ids_pack_each_key_bitwise(segments, block_size, limit):
    # the packed int of (parent, content_id, offset) as documented, key by key
    want = [((p & _M64) << 128) | (((c * _MIX) & _M64) << 64) | o if 0 <= c <= _M64 else (p, c, o)
            for p, c, o in block_keys(segments, block_size, limit)]
    assert list(block_ids(segments, block_size, limit)) == want


def test_block_ids_of_a_one_segment_prompt_make_no_key_until_used():
    # the usual prompt: its keys are one range (no int object per block until one is looked up)
    keys = block_ids(((7, 4096),), 16)
    assert isinstance(keys, range) and len(keys) == 256
    assert keys[:3] == range(keys[0], keys[0] + 48, 16)
    assert isinstance(block_ids(((7, 40), (8, 40)), 16), list)     # two runs: one list


def test_cached_block_is_hit_then_evicted_lru():
    pool = BlockPool(4, block_size=16)
    keys = block_keys(((7, 32),), 16)
    pool.allocate(2)
    for k in keys:
        assert pool.register(k)
    pool.free(keys, 0)
    assert pool.num_free == 4 and pool.match(keys, 10) == 2
    pool.allocate(2)  # the two never-used anonymous blocks go first
    assert pool.match(keys, 10) == 2
    pool.allocate(1)  # now the LRU cached block (the tail, freed first) goes
    assert pool.match(keys, 10) == 1 and pool.evictions == 1


def test_touch_takes_cached_blocks_out_of_the_free_queue():
    pool = BlockPool(3, block_size=16)
    keys = block_keys(((7, 32),), 16)
    pool.allocate(2)
    for k in keys:
        pool.register(k)
    pool.free(keys, 0)
    assert pool.evictable(keys) == 2
    pool.touch(keys)
    assert pool.num_free == 1 and pool.evictable(keys) == 0
    pool.check()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 120), st.booleans()), max_size=60))
def test_blocks_in_use_never_exceed_capacity(ops):
    """Random admissions and releases keep used + free == capacity and refs consistent."""
    pool = BlockPool(24, block_size=16)
    held = []  # (keys, anon)
    for content, length, release in ops:
        if release and held:
            keys, anon = held.pop(0)
            pool.free(keys, anon)
        else:
            keys = block_keys(((content, length),), 16)
            hit = pool.match(keys, (length - 1) // 16)
            need = -(-length // 16) - hit
            if need + pool.evictable(keys[:hit]) > pool.num_free:
                continue
            pool.touch(keys[:hit])
            pool.allocate(need)
            mine = list(keys[:hit])
            for k in keys[hit:]:
                if pool.register(k):
                    mine.append(k)
            held.append((mine, -(-length // 16) - len(mine)))
        pool.check()
        assert pool.num_used <= pool.capacity
        assert pool.num_used == sum(len(k) + a for k, a in held) - _shared(held)
    for keys, anon in held:
        pool.free(keys, anon)
    assert pool.num_free == pool.capacity


def _shared(held):
    """Blocks counted twice because two holders share one cached block."""
    counts = {}
    for keys, _ in held:
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
    return sum(c - 1 for c in counts.values())


def test_evicting_part_of_a_freed_deferred_request_equals_eager_registration():
    # the front of the free queue is a freed deferred request's group of blocks: allocations
    # smaller than what is left of it take from the group (allocate's shortcut), the last
    # one empties it
    from labsim_llm.engine.kv_cache import block_ids

    lazy, eager = BlockPool(40, 4), BlockPool(40, 4)
    keys = block_ids(((7, 40),), 4)                      # 10 full blocks
    for pool in (lazy, eager):
        pool.allocate(12)
    hashed: list = []
    d = lazy.defer(keys, hashed)
    d.n = 10
    eager.register_many(keys)
    lazy.free_deferred(d, 2)
    eager.free(keys, 2)
    for pool in (lazy, eager):
        pool.allocate(30)                                # every anonymous block: the group is next
    for n in (1, 3, 2, 4):
        for pool in (lazy, eager):
            pool.allocate(n)
            pool.check()
        assert lazy.evictions == eager.evictions
        assert lazy.free_order() == eager.free_order()
        assert lazy.num_free == eager.num_free
    assert lazy.evictions == 10 and lazy.num_free == 0 and d.state == 3


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 3))
def test_evicting_part_of_a_freed_deferred_group_equals_eager(prompt_blocks, takes, anon_first):
    """A request freed while its registration was deferred leaves one group entry in the free
    queue; allocations that evict part of it (the oldest entry by then) leave the pool as an
    eager pool that registered and freed the same keys leaves it."""
    bs = 4
    keys = block_ids(((5, prompt_blocks * bs),), bs)
    lazy, eager = BlockPool(48, bs), BlockPool(48, bs)
    for pool in (lazy, eager):
        pool.allocate(48)                              # full: no never-used blocks go first
        pool.free([], anon_first)                      # anonymous blocks freed before the request
    rec = lazy.defer(keys, [])
    rec.n = prompt_blocks
    lazy.free_deferred(rec, 2)                         # the request: 2 blocks past its prompt
    eager.free(eager.register_many(keys), 2)
    for pool in (lazy, eager):
        pool.free([], 3)                               # and some freed after it
    for n in takes:
        if n > lazy.num_free:
            break
        lazy.allocate(n)
        eager.allocate(n)
        assert (lazy.num_free, lazy.evictions) == (eager.num_free, eager.evictions)
        lazy.check()
    # (a lookup materialises the group: only now)
    assert lazy.match(keys, len(keys)) == eager.match(keys, len(keys))
