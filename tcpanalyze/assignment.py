"""Which `--jobs` worker owns each five-tuple.

Every worker (or the parent that deals for them) runs the same assignment on the same
segments, so all agree without talking. A five-tuple is known by its bucket, a hash of
its two ends (`bucket_of`, or `buckets` for a batch's columns: the same numbers). A
bucket seen for the first time goes to the worker with the least recent load (segments,
halved every 8192), ties to the lowest number, and stays there. Unlike a plain hash
modulo the workers, this keeps a few concurrent bulk transfers (which carry most packets
of many captures) on different workers (the bench capture's segments, 2 workers: a plain
hash 61 % / 39 %, four of its six downloads on one side; this 50.3 % / 49.7 %); with
2**20 buckets, two five-tuples share one rarely (and then just share a worker).

The dealer asks for every TCP segment of the capture, so `workers` is a plain loop over a
batch's segments, compiled (COMPILED_MODULES): on the bench capture 0.16 s for 2.08
million segments. Buckets instead of the five-tuples themselves spare the dealer the flow
table's grouping of a batch (two sorts) and its Python tuples: its `picks` went from 0.39
to 0.28 s of CPU. (Interpreted, the loop takes 0.34 s.)
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["Assignment", "bucket_of", "buckets"]

BUCKET_BITS: Final = 20
_MASK: Final = (1 << 64) - 1
_MUL_LO: Final = 0x9E3779B97F4A7C15  # odd 64-bit multipliers (golden ratio, murmur3's)
_MUL_HI: Final = 0xC2B2AE3D27D4EB4F
_MUL_VLAN: Final = 0x165667B19E3779F9  # (xxhash's PRIME64_5)
_SHIFT: Final = 29  # the product's high bits, folded down into the bucket's


def _end(addr: bytes, port: int) -> int:
    """One end as a number: the address (an IPv6 one folded to 32 bits by xor of its
    words), then the port. An IPv4 end is what the columns hold: (src << 16) | sport."""
    value = int.from_bytes(addr, "big")
    if len(addr) != 4:
        folded = 0
        while value:
            folded ^= value & 0xFFFFFFFF
            value >>= 32
        value = folded
    return (value << 16) | port


def bucket_of(src: bytes, sport: int, dst: bytes, dport: int, vlan: int = 0) -> int:
    """The bucket of a five-tuple, either way round; with `vlan` (Segment.vlan, non-zero
    only for a VLAN-aware key: settings.vlan_tracking) mixed in, so that one five-tuple
    on several VLANs may go to several workers. An untagged one's is unchanged."""
    a = _end(src, sport)
    b = _end(dst, dport)
    lo, hi = (a, b) if a <= b else (b, a)
    h = ((lo * _MUL_LO) & _MASK) ^ ((hi * _MUL_HI) & _MASK)
    if vlan:
        h ^= ((vlan + 1) * _MUL_VLAN) & _MASK
    return (h ^ (h >> _SHIFT)) & ((1 << BUCKET_BITS) - 1)


def buckets(lo: Any, hi: Any) -> Any:
    """`bucket_of` for many IPv4 five-tuples at once: `lo` and `hi` (int64 arrays) are
    each one's two ends as `_end` makes them, the smaller first."""
    import numpy as np

    h = (lo.view(np.uint64) * np.uint64(_MUL_LO)) ^ (hi.view(np.uint64) * np.uint64(_MUL_HI))
    return ((h ^ (h >> np.uint64(_SHIFT))) & np.uint64((1 << BUCKET_BITS) - 1)).astype(
        np.int64)


# Forget a bucket's worker once it has been silent this much longer than the idle
# timeout: its connection has left its worker's table by then (memory stays bounded by
# the connections of the recent past, not by the capture).
FORGET_MARGIN: Final = 120.0
DECAY_EVERY: Final = 8192  # segments between halvings of the recent-load counters
_FORGET_FROM: Final = 65536  # buckets remembered before the silent ones are forgotten


class Assignment:
    """Which worker owns a five-tuple's bucket (see the module's note)."""

    def __init__(self, jobs: int, idle_timeout: float) -> None:
        self.owner: dict[Any, list[Any]] = {}  # key -> [worker, time last seen]
        self.load: list[int] = [0] * jobs  # one per worker
        self.count = 0
        self.forget_after = 2 * idle_timeout + FORGET_MARGIN

    def worker(self, src: bytes, sport: int, dst: bytes, dport: int, ts: float,
               vlan: int = 0) -> int:
        """The worker of one segment, in capture order (`vlan`: as for bucket_of)."""
        key = bucket_of(src, sport, dst, dport, vlan)
        entry = self.owner.get(key)
        load = self.load
        if entry is None:
            w = _least(load)
            self.owner[key] = [w, ts]
        else:
            w = entry[0]
            entry[1] = ts
        load[w] += 1
        self.count += 1
        if self.count >= DECAY_EVERY:
            self._decay(ts)
        return w

    def workers(self, keys: list[Any], kid: Any, ts: Any) -> Any:
        """`worker` for a batch of segments at once: segment j has the bucket
        keys[kid[j]] and time ts[j] (numpy arrays); returns each segment's worker (an
        int64 array), exactly as calling `worker` on them in order would, and leaves the
        same state."""
        import numpy as np  # (here: a live run, which never deals, does without numpy)

        kids: list[int] = kid.tolist()
        w_of: list[int] = [self._known(key) for key in keys]  # -1: not assigned yet
        out: list[int] = [0] * len(kids)
        load = self.load
        count = self.count
        noted = 0  # segments before this one are in `owner`, with their times
        for j in range(len(kids)):
            k = kids[j]
            w = w_of[k]
            if w < 0:
                w = _least(load)
                w_of[k] = w
            out[j] = w
            load[w] += 1
            count += 1
            if count >= DECAY_EVERY:
                self._note(keys, kid, ts, noted, j + 1, w_of)
                noted = j + 1
                forgot = self._decay(float(ts[j]))
                load = self.load
                count = 0
                if forgot:  # a forgotten bucket that comes again is new
                    w_of = [self._known(key) for key in keys]
        self._note(keys, kid, ts, noted, len(kids), w_of)
        self.count = count
        return np.array(out, dtype=np.int64)

    def _known(self, key: Any) -> int:
        entry = self.owner.get(key)
        return -1 if entry is None else int(entry[0])

    def _note(self, keys: list[Any], kid: Any, ts: Any, start: int, stop: int,
              w_of: list[int]) -> None:
        """Write the keys of segments start..stop-1 into `owner`, each with the time of
        its last segment there (what a decay reads: written before each, and at the end;
        found with numpy, not kept segment by segment in the loop)."""
        import numpy as np

        if stop <= start:
            return
        last = np.full(len(keys), -1, dtype=np.int64)
        np.maximum.at(last, kid[start:stop], np.arange(start, stop, dtype=np.int64))
        seen = np.flatnonzero(last >= 0)
        owner = self.owner
        times: list[float] = ts[last[seen]].tolist()
        for k, t in zip(seen.tolist(), times, strict=True):
            key = keys[k]
            entry = owner.get(key)
            if entry is None:
                owner[key] = [w_of[k], t]
            else:
                entry[1] = t

    def _decay(self, now: float) -> bool:
        """Halve the loads; past _FORGET_FROM buckets, forget the silent ones.
        Whether any was forgotten."""
        self.count = 0
        self.load = [n >> 1 for n in self.load]
        if len(self.owner) <= _FORGET_FROM:
            return False
        limit = now - self.forget_after
        silent = [key for key, entry in self.owner.items() if entry[1] < limit]
        for key in silent:
            del self.owner[key]
        return bool(silent)


def _least(load: list[int]) -> int:
    """The worker with the least load, ties to the lowest number."""
    w = 0
    least = load[0]
    for v in range(1, len(load)):
        if load[v] < least:
            least = load[v]
            w = v
    return w
