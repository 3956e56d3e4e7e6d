"""A paged KV cache with automatic prefix caching, as vLLM v1's ``BlockPool`` behaves.

The cache holds ``capacity`` blocks of ``block_size`` tokens. Every block with
no user (reference count 0) sits in one free queue in least-recently-freed
order; allocation takes from the front and freeing appends to the back, so
eviction of cached blocks is LRU (``vllm/v1/core/block_pool.py``,
``kv_cache_utils.FreeKVCacheBlockQueue``; see docs/engine_behaviour.md §3).

Only *full* prompt blocks carry a hash (a :func:`block_keys` key). A block
without a hash is interchangeable with any other, so they are counted, not
named: the free queue is kept as runs of anonymous blocks plus the cached
blocks by key, each stamped with the order it was freed. This keeps the
exact LRU order of vLLM while a decode that fills a block costs one integer
addition.

>>> pool = BlockPool(8, block_size=16)
>>> keys = block_keys(((1, 40),), 16)            # 40 tokens → 2 full blocks
>>> pool.allocate(3); pool.register(keys[0]); pool.register(keys[1])
True
True
>>> pool.free(keys, 1)                           # a finished request returns them
>>> pool.num_free, pool.match(keys, 2)
(8, 2)
"""

from __future__ import annotations

from collections import OrderedDict, deque

#: key of a full block: (hash of the segments before its segment, segment id, token offset of its end)
BlockKey = tuple


def block_keys(segments, block_size: int, limit: int | None = None) -> list[BlockKey]:
    """Keys of the full blocks of a prompt described by ``(content_id, length)`` *segments*.

    A key identifies the whole prefix up to the end of its block (chained, as
    vLLM's block hashes are): equal keys ⇔ equal leading tokens. *limit* caps
    the number of keys returned.
    """
    keys: list[BlockKey] = []
    parent = 0
    start = 0
    edge = block_size
    cap = limit if limit is not None else 1 << 62
    for content_id, length in segments:
        end = start + length
        while edge <= end and len(keys) < cap:
            keys.append((parent, content_id, edge - start))
            edge += block_size
        parent = hash((parent, content_id, length))
        start = end
    return keys


class BlockPool:
    """Blocks in use and free, the prefix-cache map, and the LRU free queue.

    ``num_free`` counts every block nobody uses, cached or not (cached free
    blocks can be evicted at any time, so they never block an allocation).
    Invariant: ``num_used + num_free == capacity``.
    """

    def __init__(self, capacity: int, block_size: int = 16, enable_caching: bool = True):
        if capacity < 1:
            raise ValueError("a KV cache needs at least one block")
        self.capacity = int(capacity)
        self.block_size = int(block_size)
        self.enable_caching = bool(enable_caching)
        self._refs: dict[BlockKey, int] = {}  # every cached block → users
        self._free_cached: OrderedDict[BlockKey, int] = OrderedDict()  # ref 0, in free order
        self._anon_runs: deque[list[int]] = deque([[0, self.capacity]])  # [free order, count]
        self._anon_free = self.capacity
        self._stamp = 1
        self.evictions = 0

    # -- counts -------------------------------------------------------------------------

    @property
    def num_free(self) -> int:
        """Blocks nobody uses (anonymous free plus cached free)."""
        return self._anon_free + len(self._free_cached)

    @property
    def num_used(self) -> int:
        """Blocks held by at least one request."""
        return self.capacity - self.num_free

    @property
    def num_cached(self) -> int:
        """Blocks that carry a prefix-cache key (used or free)."""
        return len(self._refs)

    # -- prefix cache -------------------------------------------------------------------

    def match(self, keys, max_blocks: int) -> int:
        """How many leading *keys* are cached (at most *max_blocks*): the prefix hit in blocks."""
        if not self.enable_caching:
            return 0
        refs = self._refs
        n = 0
        for key in keys:
            if n >= max_blocks or key not in refs:
                break
            n += 1
        return n

    def evictable(self, keys) -> int:
        """How many of the cached *keys* are free (a hit on them takes a block from the free pool)."""
        free = self._free_cached
        return sum(1 for k in keys if k in free)

    def touch(self, keys) -> None:
        """Take a reference on cached *keys* (a prefix hit), removing free ones from the queue."""
        refs, free = self._refs, self._free_cached
        for key in keys:
            if refs[key] == 0:
                del free[key]
            refs[key] += 1

    def register(self, key: BlockKey) -> bool:
        """Give a freshly computed, held block the prefix key *key*; False if it is cached already."""
        if not self.enable_caching or key in self._refs:
            return False
        self._refs[key] = 1
        return True

    # -- allocation ---------------------------------------------------------------------

    def allocate(self, n: int) -> None:
        """Take *n* blocks from the front of the free queue, evicting cached ones met there.

        The caller checks ``n <= num_free`` first (vLLM's ``allocate_slots`` does).
        """
        if n > self.num_free:
            raise RuntimeError(f"KV cache: {n} blocks asked, {self.num_free} free")
        runs, free = self._anon_runs, self._free_cached
        while n > 0:
            head_cached = next(iter(free.values())) if free else None
            if runs and (head_cached is None or runs[0][0] < head_cached):
                run = runs[0]
                take = run[1] if run[1] <= n else n
                run[1] -= take
                if run[1] == 0:
                    runs.popleft()
                self._anon_free -= take
                n -= take
            else:
                key, _ = free.popitem(last=False)
                del self._refs[key]
                self.evictions += 1
                n -= 1

    def free(self, keys, n_anon: int) -> None:
        """Return a request's blocks: *n_anon* unnamed ones first, then *keys* tail first.

        vLLM frees a request's blocks in reverse order so its deepest blocks
        are evicted before shared leading ones; anonymous blocks are its tail.
        """
        stamp = self._stamp
        if n_anon:
            self._anon_runs.append([stamp, n_anon])
            self._anon_free += n_anon
            stamp += 1
        refs, free = self._refs, self._free_cached
        for key in reversed(keys):
            left = refs[key] - 1
            refs[key] = left
            if left == 0:
                free[key] = stamp
                stamp += 1
        self._stamp = stamp

    def check(self) -> None:
        """Assert the pool's invariants (for tests)."""
        assert 0 <= self.num_free <= self.capacity, (self.num_free, self.capacity)
        assert self._anon_free == sum(r[1] for r in self._anon_runs)
        assert all(self._refs[k] == 0 for k in self._free_cached)
        held_cached = sum(1 for v in self._refs.values() if v > 0)
        assert held_cached <= self.num_used


__all__ = ["BlockPool", "BlockKey", "block_keys"]
