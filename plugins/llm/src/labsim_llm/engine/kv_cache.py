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
addition. A caller may also *defer* a request's registration (:meth:`BlockPool.defer`):
its keys stay out of the map until a lookup needs them, with the same results.

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

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from itertools import repeat
from operator import index as _index
from typing import Final

from labsim import native

from labsim_llm import native as llm_native

#: key of a full block: (hash of the segments before its segment, segment id, token offset of its end)
BlockKey = tuple


_M64: Final = (1 << 64) - 1
#: odd, so ``id * _MIX mod 2**64`` is a bijection that scatters consecutive ids (ints hash linearly)
_MIX: Final = 0x9E3779B97F4A7C15


def block_keys(segments, block_size, limit=None, *, packed=False) -> Sequence:
    """Keys of the full blocks of a prompt described by ``(content_id, length)`` *segments*,
    as a sequence: a list, or with *packed* a ``range`` when they are one run (a prompt
    whose full blocks lie in one segment, the usual one: no key object is made until used).

    A key identifies the whole prefix up to the end of its block (chained, as
    vLLM's block hashes are): equal keys ⇔ equal leading tokens. *limit* caps
    the number of keys returned.

    *packed* gives each key ``(parent, content_id, offset)`` as one int (cheaper to make,
    hash and keep; :func:`block_ids`): ``parent mod 2**64`` in bits 128 and up,
    ``content_id · _MIX mod 2**64`` in bits 64–127 and ``offset`` below — one-to-one, so
    equal ints ⇔ equal keys (content ids outside 0..2**64 − 1 keep the tuple). Use one
    kind or the other within a pool.
    """
    runs: list = []        # the keys of each segment with full blocks: a range or a list
    count = 0
    parent = 0
    start = 0
    if type(block_size) is not int:
        block_size = _index(block_size)             # (numpy's: see block_ids)
    edge = block_size
    cap = limit if limit is not None else 1 << 62
    for content_id, length in segments:
        if type(length) is not int:
            length = _index(length)
        end = start + length
        if edge <= end and count < cap:
            first = edge - start
            offsets = range(first, length + 1, block_size)
            take = min(len(offsets), cap - count)
            if packed and 0 <= content_id <= _M64 and length <= _M64:
                base = ((parent & _M64) << 128) | (((int(content_id) * _MIX) & _M64) << 64)
                # base | o for each offset: o < 2**64 fills only the zero low bits, so it is
                # base + o, and the keys are one range
                runs.append(range(base + first, base + first + take * block_size, block_size))
            else:
                runs.append([(parent, content_id, o) for o in offsets[:take]])
            count += take
            edge += take * block_size
        parent = hash((parent, content_id, length))
        start = end
    if len(runs) == 1:
        return runs[0]
    return [key for run in runs for key in run]


def block_ids(segments, block_size, limit=None) -> Sequence:
    """:func:`block_keys` packed as plain ints: equal ⇔ equal keys (what the engines key on)."""
    if limit is None and len(segments) == 1:
        segment = segments[0]
        content_id, length, size = segment[0], segment[1], block_size
        if not (type(content_id) is int and type(length) is int and type(size) is int):
            # other integers (numpy's) as ints: their sums with a packed key, above 2**64,
            # would overflow
            content_id, length, size = _index(content_id), _index(length), _index(size)
        run = _one_run(content_id, length, size)
        if run is not None:
            return run
    return block_keys(segments, block_size, limit, packed=True)


def _one_run(content_id: int, length: int, block_size: int) -> range | None:
    """The packed keys of a prompt of one segment (a fresh one, every request has): block_keys'
    one run, its parent 0, worked out directly (typed: the compiled twin compares and
    multiplies them as ints); None when they are not packed so (a prompt shorter than a
    block, numbers beyond 64 bits)."""
    if block_size <= length <= _M64 and 0 <= content_id <= _M64:
        base = ((content_id * _MIX) & _M64) << 64
        return range(base + block_size, base + block_size + length // block_size * block_size,
                     block_size)
    return None


class _Deferred:
    """A request's prompt blocks whose cache registration is put off (see :meth:`BlockPool.defer`).

    ``state`` 0: held, ``n`` leading *keys* registered as far as the cache is concerned;
    1: freed, its ``c`` leading keys still cached and free, one group entry in the free
    queue (deepest block first); 2: materialised (its keys live in the cache map; a
    freed group stays in the queue as ``c`` entries); 3: gone.
    """

    __slots__ = ("keys", "hashed", "n", "c", "state")

    def __init__(self, keys: Sequence, hashed: list) -> None:
        self.keys = keys
        self.hashed = hashed
        self.n = 0
        self.c = 0
        self.state = 0


class BlockPool:
    """Blocks in use and free, the prefix-cache map, and the LRU free queue.

    ``num_free`` counts every block nobody uses, cached or not (cached free
    blocks can be evicted at any time, so they never block an allocation).
    Invariant: ``num_used + num_free == capacity``.
    """

    def __init__(self, capacity, block_size=16, enable_caching=True) -> None:
        if capacity < 1:
            raise ValueError("a KV cache needs at least one block")
        self.capacity = int(capacity)
        self.block_size = int(block_size)
        self.enable_caching = bool(enable_caching)
        self._refs: dict = {}  # every cached block → users (0: free, in the queue)
        self._cached_free = 0  # blocks with 0 users
        # the free queue of cached blocks, from index _head on: keys in the order they were
        # freed, with that order's stamps. A key taken by a prefix hit while free leaves a
        # stale entry behind; _skip counts those not yet reached per key.
        self._queue: list = []
        self._queue_stamps: list[int] = []
        self._head = 0
        self._skip: dict = {}
        self._stale = 0
        self._anon_runs: deque[list[int]] = deque([[0, self.capacity]])  # [free order, count]
        self._anon_free = self.capacity
        self._stamp = 1
        self.evictions = 0
        # deferred registrations by first key; first keys of chains ever registered eagerly
        self._deferred: dict = {}
        self._roots: set = set()
        self._groups = 0  # deferred group entries in the queue from _head on

    # -- counts -------------------------------------------------------------------------

    @property
    def num_free(self) -> int:
        """Blocks nobody uses (anonymous free plus cached free)."""
        return self._anon_free + self._cached_free

    @property
    def num_used(self) -> int:
        """Blocks held by at least one request."""
        return self.capacity - self._anon_free - self._cached_free     # capacity − num_free

    @property
    def num_cached(self) -> int:
        """Blocks that carry a prefix-cache key (used or free)."""
        return len(self._refs) + sum(r.n if r.state == 0 else r.c
                                     for r in self._deferred.values())

    # -- prefix cache -------------------------------------------------------------------

    def match(self, keys, max_blocks) -> int:
        """How many leading *keys* are cached (at most *max_blocks*): the prefix hit in blocks."""
        if not self.enable_caching:
            return 0
        if not keys:
            return 0
        first = keys[0]
        if self._deferred and first in self._deferred:
            self.materialize(self._deferred[first])
        refs = self._refs
        if first not in refs:           # (no hit: the usual fresh prompt, answered without
            return 0                    # walking its keys)
        n = 0
        for key in keys:
            if n >= max_blocks or key not in refs:
                break
            n += 1
        return n

    def prompt_hits(self, keys, segments, max_blocks) -> tuple:
        """``(keys, hits)``: *keys*, or when None the block keys of a prompt of *segments*
        (:func:`block_ids`), and how many leading ones are cached (:meth:`match`, at most
        *max_blocks*): an engine's lookup at a prompt's admission, in one call."""
        if keys is None:
            keys = block_ids(segments, self.block_size)
        return keys, self.match(keys, max_blocks)

    def evictable(self, keys) -> int:
        """How many of the cached *keys* are free (a hit on them takes a block from the free pool)."""
        refs = self._refs
        return sum(1 for k in keys if refs.get(k) == 0)

    def touch(self, keys) -> None:
        """Take a reference on cached *keys* (a prefix hit), removing free ones from the queue."""
        refs = self._refs
        for key in keys:
            users = refs[key]
            if users == 0:
                self._cached_free -= 1
                self._skip[key] = self._skip.get(key, 0) + 1
                self._stale += 1
            refs[key] = users + 1

    def register(self, key: BlockKey) -> bool:
        """Give a freshly computed, held block the prefix key *key*; False if it is cached already."""
        if not self.enable_caching or key in self._refs:
            return False
        self._refs[key] = 1
        return True

    def register_many(self, keys) -> list:
        """:meth:`register` each of *keys* in order; the keys it registered (not cached already)."""
        if not self.enable_caching:
            return []
        refs = self._refs
        if refs.keys().isdisjoint(keys):
            refs.update(dict.fromkeys(keys, 1))
            return list(keys)
        done = []
        for key in keys:
            if key not in refs:
                refs[key] = 1
                done.append(key)
        return done

    # -- deferred registration ----------------------------------------------------------
    #
    # Keys are chained, so a request sharing any key with another shares its first key.
    # A request whose first key no cached chain has starts *deferred*: its keys stay out
    # of the cache map (indexed by the first key only) until a lookup of that first key
    # (or the caller) materialises them, exactly as eager registration would have left
    # them. Freed while deferred, its blocks go in the free queue as one group entry
    # (deepest first, consecutive stamps), evicted a count at a time.

    def defer(self, keys, hashed: list) -> _Deferred | None:
        """Start deferring *keys* (a request's full prompt keys, none hit) or return None.

        *hashed* is the request's list of registered keys; materialising fills it.
        The caller sets the record's ``n`` (keys registered so far) while its ``state`` is 0,
        and frees with :meth:`free_deferred` then; otherwise it uses :meth:`register_many`
        and :meth:`free` as for any request (also on None).
        """
        if not self.enable_caching or not keys:
            return None
        k0 = keys[0]
        d = self._deferred.get(k0)
        if d is not None:
            self.materialize(d)
            return None
        if k0 in self._roots:
            return None
        rec = _Deferred(keys, hashed)
        self._deferred[k0] = rec
        return rec

    def materialize(self, rec: _Deferred) -> None:
        """Register *rec*'s keys now, as eager registration would have them."""
        state = rec.state
        if state == 0:
            done = rec.keys[:rec.n]
            self._refs.update(dict.fromkeys(done, 1))
            rec.hashed.extend(done)
        elif state == 1:
            self._refs.update(dict.fromkeys(rec.keys[:rec.c], 0))
        else:
            return
        rec.state = 2
        k0 = rec.keys[0]
        del self._deferred[k0]
        self._roots.add(k0)

    def free_deferred(self, rec: _Deferred, n_anon) -> None:
        """:meth:`free` for a still deferred *rec* holding *n_anon* unnamed blocks besides."""
        n_anon = int(n_anon)
        stamp = self._stamp
        if n_anon:
            self._anon_runs.append([stamp, n_anon])
            self._anon_free += n_anon
            stamp += 1
        n = rec.n
        if n:
            self._queue.append(rec)
            self._queue_stamps.append(stamp)
            self._cached_free += n
            self._groups += 1
            rec.c = n
            rec.state = 1
            stamp += n
        else:
            del self._deferred[rec.keys[0]]
            rec.state = 3
        self._stamp = stamp

    # -- allocation ---------------------------------------------------------------------

    def allocate(self, count) -> None:
        """Take *count* blocks from the front of the free queue, evicting cached ones met there.

        The caller checks ``count <= num_free`` first (vLLM's ``allocate_slots`` does).
        """
        n = int(count)                  # (any integer: the compiled twin works on an int)
        anon = self._anon_free
        if n > anon + self._cached_free:
            raise RuntimeError(f"KV cache: {n} blocks asked, {self.num_free} free")
        runs = self._anon_runs
        if not self._cached_free:
            # only anonymous blocks are free: take from the oldest runs on
            if n > 0:
                self._anon_free = anon - n
                while True:
                    run = runs[0]
                    c = run[1]
                    if c > n:
                        run[1] = c - n
                        return
                    runs.popleft()
                    n -= c
                    if not n:
                        return
            return
        if runs and not self._stale:
            run = runs[0]
            if run[1] > n and self._queue_stamps[self._head] >= run[0]:
                # the usual case: every cached block was freed after the oldest anonymous run,
                # which holds the n blocks (what the loops below take then)
                run[1] -= n
                self._anon_free = anon - n
                return
        if self._groups and n > 0:
            h = self._head
            e = self._queue[h]
            if (type(e) is _Deferred and e.state == 1 and e.c > n
                    and (not runs or self._queue_stamps[h] < runs[0][0])):
                # the usual case with deferred groups: the oldest entry, a freed request's
                # cached blocks, went before every anonymous run and holds more than n (what
                # _allocate_slow's first pass takes then)
                e.c -= n
                self._queue_stamps[h] += n
                self._cached_free -= n
                self.evictions += n
                return
        if not self._stale and not self._groups:
            # every queued entry is live: evict those freed before the oldest anonymous run,
            # else take anonymous blocks (the loop below, with its state in locals)
            refs = self._refs
            queue, stamps, h = self._queue, self._queue_stamps, self._head
            cached = self._cached_free
            evicted = 0
            while n > 0:
                if cached:
                    end = h + n
                    if end > len(stamps):
                        end = len(stamps)
                    if runs:
                        end = bisect_left(stamps, runs[0][0], h, end)
                    if end > h:
                        m = end - h
                        if m < 8:
                            for i in range(h, end):
                                del refs[queue[i]]
                        else:
                            deque(map(refs.__delitem__, queue[h:end]), 0)
                        cached -= m
                        evicted += m
                        n -= m
                        h = end
                        continue
                run = runs[0]
                c = run[1]
                if c <= n:
                    runs.popleft()
                    anon -= c
                    n -= c
                else:
                    run[1] = c - n
                    anon -= n
                    n = 0
            self._anon_free = anon
            self._cached_free = cached
            self.evictions += evicted
            if h != self._head:
                if h > 4096 and 2 * h > len(queue):
                    self._advance(h)
                else:
                    self._head = h
            return
        self._allocate_slow(n)

    def _allocate_slow(self, n: int) -> None:
        """:meth:`allocate` entry by entry: stale entries and deferred groups."""
        runs = self._anon_runs
        refs = self._refs
        skips = self._skip
        queue, stamps = self._queue, self._queue_stamps
        h = self._head
        while n > 0:
            if self._cached_free:
                e = queue[h]
                if type(e) is _Deferred:
                    if e.state == 1:
                        if not runs or stamps[h] < runs[0][0]:
                            m = e.c if e.c <= n else n
                            e.c -= m
                            stamps[h] += m
                            self._cached_free -= m
                            self.evictions += m
                            n -= m
                            if not e.c:
                                del self._deferred[e.keys[0]]
                                e.state = 3
                                self._groups -= 1
                                h += 1
                            continue
                    else:                                     # materialised: its next key
                        key = e.keys[e.c - 1]
                        if skips and self._drop_stale(key):
                            pass
                        elif not runs or stamps[h] < runs[0][0]:
                            del refs[key]
                            self._cached_free -= 1
                            self.evictions += 1
                            n -= 1
                        else:
                            key = None
                        if key is not None:
                            e.c -= 1
                            stamps[h] += 1
                            if not e.c:
                                self._groups -= 1
                                h += 1
                            continue
                else:
                    key = e
                    if skips and self._drop_stale(key):
                        h += 1
                        continue
                    if not runs or stamps[h] < runs[0][0]:
                        del refs[key]
                        self._cached_free -= 1
                        self.evictions += 1
                        n -= 1
                        h += 1
                        continue
            run = runs[0]
            take = run[1] if run[1] <= n else n
            run[1] -= take
            if run[1] == 0:
                runs.popleft()
            self._anon_free -= take
            n -= take
        self._advance(h)

    def _drop_stale(self, key) -> bool:
        """Consume one stale queue entry of *key* (a key freed again after it was queued), if
        it has one."""
        skips = self._skip
        skip = skips.get(key)
        if not skip:
            return False
        if skip == 1:
            del skips[key]
        else:
            skips[key] = skip - 1
        self._stale -= 1
        return True

    def _advance(self, head: int) -> None:
        """Move the queue's head to *head*, dropping the consumed entries now and then."""
        if head > 4096 and 2 * head > len(self._queue):
            del self._queue[:head]
            del self._queue_stamps[:head]
            head = 0
        self._head = head

    def free(self, keys, n_anon) -> None:
        """Return a request's blocks: *n_anon* unnamed ones first, then *keys* tail first.

        vLLM frees a request's blocks in reverse order so its deepest blocks
        are evicted before shared leading ones; anonymous blocks are its tail.
        """
        n_anon = int(n_anon)
        stamp = self._stamp
        if n_anon:
            self._anon_runs.append([stamp, n_anon])
            self._anon_free += n_anon
            stamp += 1
        if keys:
            refs = self._refs
            back = keys[::-1]
            users = list(map(refs.__getitem__, back))
            if users.count(1) == len(users):            # no other user: all become free
                refs.update(zip(back, repeat(0)))
                self._queue.extend(back)
                self._queue_stamps.extend(range(stamp, stamp + len(back)))
                self._cached_free += len(back)
                stamp += len(back)
            else:
                for key, left in zip(back, users):
                    left -= 1
                    refs[key] = left
                    if left == 0:
                        self._queue.append(key)
                        self._queue_stamps.append(stamp)
                        self._cached_free += 1
                        stamp += 1
        self._stamp = stamp

    def free_order(self) -> list:
        """The free cached blocks' keys, least recently freed first (the eviction order)."""
        skip = dict(self._skip)
        live: list = []
        for entry in self._queue[self._head:]:
            if type(entry) is _Deferred:
                keys = entry.keys[entry.c - 1::-1] if entry.c else []
                if entry.state == 1:
                    live.extend(keys)
                    continue
            else:
                keys = (entry,)
            for key in keys:
                if skip.get(key):
                    skip[key] -= 1
                else:
                    live.append(key)
        return live

    def check(self) -> None:
        """Assert the pool's invariants (for tests)."""
        assert 0 <= self.num_free <= self.capacity, (self.num_free, self.capacity)
        assert self._anon_free == sum(r[1] for r in self._anon_runs)
        live = self.free_order()
        assert len(live) == self._cached_free == len(set(live))
        deferred_free = set()
        entries = 0
        for entry in self._queue[self._head:]:
            if type(entry) is _Deferred:
                assert entry.c > 0 and entry.state in (1, 2)
                entries += entry.c
                if entry.state == 1:
                    assert self._deferred[entry.keys[0]] is entry
                    deferred_free.update(entry.keys[:entry.c])
            else:
                entries += 1
        assert self._groups == sum(type(e) is _Deferred for e in self._queue[self._head:])
        assert set(live) == {k for k, v in self._refs.items() if v == 0} | deferred_free
        assert not deferred_free & self._refs.keys()
        assert sum(self._skip.values()) == self._stale == entries - len(live)
        stamps = self._queue_stamps[self._head:]
        assert all(a < b for a, b in zip(stamps, stamps[1:]))
        held_cached = sum(1 for v in self._refs.values() if v > 0)
        assert held_cached <= self.num_used


__all__ = ["BlockPool", "BlockKey", "block_keys", "block_ids"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {"block_keys": block_keys, "block_ids": block_ids, "BlockPool": BlockPool}

native.use_group_twin("labsim_llm", llm_native.MODULES, "kv_cache", globals(), PURE)
