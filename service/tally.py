"""Per-request metric updates added up in memory and written once per event-loop turn.

Every update of a prometheus_client value in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, as
with `--workers N`) takes a lock, checks the process id and writes to the worker's file (1.2 us
for a counter, 2.9 us for a histogram's `observe`, which writes twice); a single-image predict
made twelve such writes (the request counter and latency, the queue wait and depth, the image
count, energy, OOD score and checks): up to 7% of the app's CPU time for it
(docs/benchmarks-peers.md, "sixth part"). A `Tally` keeps the turn's counter increments,
histogram values and gauge settings in dictionaries and writes them, added up, in a callback
the event loop runs after the callbacks already waiting, so the requests of one batch, which
finish in one turn, share one write per series (and one per histogram bucket touched).

Nothing is lost: counters get the sum of their increments, histograms every value
(`observe_many`: the buckets and sum `observe` would give), a gauge its last setting. A reader
in this process sees every update made before it reads: `Metrics.exposition` (the /metrics
route) and `Runtime.close` flush first. Another worker's /metrics reads this worker's file, at
most one event-loop turn behind (a turn's callbacks, well under a millisecond of work unless
the loop is overloaded). Outside a running event loop (a thread, a test calling in directly) an
update is written at once.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from service.turns import EndOfTurn

__all__ = ["Tally", "observe_many"]


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for every value: one update of the sum and one per bucket touched,
    where `observe` makes two per value (each a locked write to the worker's file in
    multiprocess mode: ~3 us; 128 of them for a 64-image predict's energy and OOD score).

    Reads prometheus_client's `_upper_bounds`, `_buckets` and `_sum` (a labelled child's); a
    version without them gets the plain loop. Same buckets as `observe` (NaN in none), and the
    sum up to float rounding (tests/service/test_metrics.py)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if len(values) < 2 or bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose bound is >= it (the last is +Inf)
    counts = collections.Counter(bisect.bisect_left(bounds, v) for v in values if v == v)
    total.inc(sum(values))
    for index, n in counts.items():
        buckets[index].inc(n)


class Tally:
    """Counter increments, histogram values and gauge settings for one event loop's thread."""

    def __init__(self) -> None:
        self._counts: dict[Counter, float] = {}
        self._values: dict[Histogram, list[float]] = {}
        self._settings: dict[Gauge, float] = {}
        self._turn = EndOfTurn(self.flush)

    def inc(self, counter: Counter, amount: float = 1.0) -> None:
        """`counter.inc(amount)` (a labelled child), written at the end of the turn."""
        self._counts[counter] = self._counts.get(counter, 0.0) + amount
        self._written_later()

    def observe(self, histogram: Histogram, value: float) -> None:
        """`histogram.observe(value)` (a labelled child), written at the end of the turn."""
        values = self._values.get(histogram)
        if values is None:
            self._values[histogram] = [value]
        else:
            values.append(value)
        self._written_later()

    def observe_all(self, histogram: Histogram, values: Sequence[float]) -> None:
        """`histogram.observe(v)` for each of `values`, written at the end of the turn."""
        self._values.setdefault(histogram, []).extend(values)
        self._written_later()

    def set(self, gauge: Gauge, value: float) -> None:
        """`gauge.set(value)` (a labelled child): the turn's last setting is written."""
        self._settings[gauge] = value
        self._written_later()

    def _written_later(self) -> None:
        if not self._turn.request():  # no event loop in this thread: now
            self.flush()

    def flush(self) -> None:
        """Write every update held (also called by readers before they read)."""
        self._turn.done()
        counts, self._counts = self._counts, {}
        values, self._values = self._values, {}
        settings, self._settings = self._settings, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        for histogram, observed in values.items():
            observe_many(histogram, observed)
        for gauge, value in settings.items():
            gauge.set(value)
