"""What turning stats on costs a cache hit: hit latency with ``ORMCACHE["STATS"]`` off and on.

    python benchmarks/stats_overhead.py                           # SQLite + locmem
    python benchmarks/stats_overhead.py --backend postgres-redis  # needs ORMCACHE_TEST_* vars

Stats on means: the four receivers connected to the blinker signals, counting in
process, and flushing to the cache with the production defaults (every 10 s or
1000 events), so the flushes' share of the cost is included. Off and on are
measured in alternating rounds on the same warm entries, so drift in the machine
hits both alike. "overhead" is the median of the per-round ratios (on/off, measured
seconds apart); "(medians)" compares the medians of all rounds, which drifts more on a
busy machine. The last line measures what stats add directly: one ``cache_hit`` send with
and without the counters connected, as a share of a hit.

The goal (issue 8): stats change hit latency by less than 5 %. Exit status 1 if a
read kind misses it by more than ``--tolerance`` (default: report only).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from read_kinds import configure, seed


def reads() -> dict:
    from django.db.models import Count

    from testproject.blog.models import Post

    post_pk = Post.objects.nocache().order_by("id").values_list("pk", flat=True)[250]
    return {
        "get by pk": lambda: Post.objects.get(pk=post_pk),
        "filter 20 + select_related": lambda: list(
            Post.objects.filter(published=True).select_related("author")[:20]
        ),
        "count": lambda: Post.objects.filter(published=True).count(),
        "annotate Count": lambda: list(
            Post.objects.annotate(n=Count("comments")).order_by("-n").values("id", "n")[:10]
        ),
    }


def set_stats(enabled: bool) -> None:
    """Connect or disconnect the stats receivers, exactly as ``stats.sync()`` does when
    ORMCACHE["STATS"]["enabled"] changes, without touching anything else (memoised read
    plans stay warm, so the two modes differ by the stats alone)."""
    from ormcache import signals, stats

    for signal, receiver in stats._RECEIVERS:
        if enabled:
            signal.connect(receiver, weak=False)
        else:
            signal.disconnect(receiver)
    assert bool(signals.cache_hit.receivers) == enabled


def per_call_us(read, number: int) -> float:
    # CPU time of this process: on a shared machine, time spent descheduled while
    # other processes run is not the read's cost and would drown a 1 % effect.
    started = time.process_time()
    for _ in range(number):
        read()
    return (time.process_time() - started) / number * 1e6


def signal_cost_us(number: int) -> float:
    """CPU µs one cache_hit send costs, receivers included (what stats add to a hit)."""
    from ormcache import signals
    from testproject.blog.models import Post

    send = signals.cache_hit.send
    labels = ("blog.post",)
    started = time.process_time()
    for _ in range(number):
        if signals.cache_hit.receivers:
            send(Post, labels=labels, db_alias="default", key="k", elapsed=0.0)
    return (time.process_time() - started) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=["sqlite-locmem", "postgres-locmem", "postgres-redis", "postgres-memcached"],
        default="sqlite-locmem",
    )
    parser.add_argument("--number", type=int, default=200, help="hits per round")
    parser.add_argument("--rounds", type=int, default=101)
    parser.add_argument("--tolerance", type=float, default=None, help="fail above this %%")
    args = parser.parse_args()
    configure(args.backend)

    from django.conf import settings
    from django.core.management import call_command

    from ormcache import stats

    call_command("migrate", verbosity=0, run_syncdb=True)
    seed()
    # Stats on, with the production flush options (10 s or 1000 events).
    settings.ORMCACHE = {**settings.ORMCACHE, "STATS": {"enabled": True}}
    stats.sync()
    stats.reset()
    print(f"backend {args.backend}; {args.number} hits per round, {args.rounds} rounds")
    print(
        f"{'read kind':<28} {'stats off µs':>13} {'stats on µs':>12}"
        f" {'overhead':>9} {'(medians)':>10}"
    )
    worst = 0.0
    hit_times: list[float] = []
    for name, read in reads().items():
        read()  # fill
        per_call_us(read, 200)
        off, on, ratios = [], [], []
        for round_number in range(args.rounds):
            order = (False, True) if round_number % 2 == 0 else (True, False)
            times = {}
            for enabled in order:
                set_stats(enabled)
                times[enabled] = per_call_us(read, args.number)
            off.append(times[False])
            on.append(times[True])
            ratios.append(times[True] / times[False])
        overhead = (statistics.median(ratios) - 1) * 100
        of_medians = (statistics.median(on) / statistics.median(off) - 1) * 100
        worst = max(worst, overhead)
        hit_times.append(statistics.median(off))
        print(
            f"{name:<28} {statistics.median(off):>13.1f} {statistics.median(on):>12.1f}"
            f" {overhead:>+8.1f}% {of_medians:>+9.1f}%"
        )
    costs = {}
    for enabled in (False, True):
        set_stats(enabled)
        costs[enabled] = statistics.median(signal_cost_us(20000) for _ in range(7))
    added = costs[True] - costs[False]
    print(
        f"one hit's signal send: {costs[False]:.2f} µs with stats off (no receiver), "
        f"{costs[True]:.2f} µs with stats on: +{added:.2f} µs, "
        f"{added / min(hit_times) * 100:.1f} % of the fastest hit above"
    )
    set_stats(True)
    counted = stats.read()
    hits = sum(s.hits for s in counted.values())
    print(f"worst overhead {worst:+.1f}%; hits counted while on: {hits}")
    stats.reset()
    if args.tolerance is not None and worst > args.tolerance:
        print(f"FAIL: above {args.tolerance}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
