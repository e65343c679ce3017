"""From a write to Varnish: how long until the purge reaches it, and the page is fresh there.

    python benchmarks/purge_latency.py                       # 200 writes, purge_delay 0.05 s
    python benchmarks/purge_latency.py --writes 500 --purge-delay 0

Needs Debian's ``varnishd`` with the xkey vmod (``apt-get install varnish
varnish-modules``) and a Redis URL in ``ORMCACHE_TEST_REDIS_URL`` (``scripts/test``
exports one; ``redis-server --port 6390 --save ''`` is enough). It flushes that Redis
database.

The stack is the one of tests/e2e/test_varnish.py: testproject on a fresh seeded SQLite
file under ``runserver`` (one process), Varnish running docs/recipes/varnish.vcl in front
of it, Redis shared by the server and this script. This script is the writer (another
process, as a cron job or a worker would be). Each round:

1. GET a post page through Varnish until Varnish serves it from its cache (a HIT);
2. rename the post (``QuerySet.update``, autocommit), and take the time when it returns:
   the write has committed and its versions are bumped;
3. wait for ormcache's ``purged`` signal, sent when Varnish has answered the PURGE
   ("write -> purged");
4. GET the page through Varnish until it shows the new title ("write -> fresh page").

It prints the median, p90, p99 and max of both, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers.get("X-Varnish-Cache", ""), response.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--purge-delay", type=float, default=0.05)
    args = parser.parse_args()
    redis_url = os.environ.get("ORMCACHE_TEST_REDIS_URL")
    if not redis_url:
        sys.exit("ORMCACHE_TEST_REDIS_URL is not set (see the docstring)")

    from tests.varnish_process import site_behind_varnish

    with (
        tempfile.TemporaryDirectory() as tmp,
        site_behind_varnish(Path(tmp), redis_url) as (
            varnish,
            env,
        ),
    ):
        os.environ.update(env)
        run(varnish.url, args)


def run(base: str, args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import override_settings

    from ormcache import signals
    from testproject.blog.models import Post

    _, home = get(base + "/")
    path = re.search(r'href="(/post/(\d+)/)"', home)
    assert path is not None, "no post on the home page"
    url, pk = base + path.group(1), int(path.group(2))
    purged = threading.Event()
    signals.purged.connect(lambda sender, **kw: kw["ok"] and purged.set(), weak=False)
    downstream = {**settings.ORMCACHE["DOWNSTREAM"], "purge_delay": args.purge_delay}
    to_purge, to_fresh = [], []
    with override_settings(ORMCACHE={**settings.ORMCACHE, "DOWNSTREAM": downstream}):
        for round_ in range(args.writes):
            while get(url)[0] != "HIT":
                pass
            title = f"Purge latency round {round_} {time.time_ns()}"
            purged.clear()
            Post.objects.filter(pk=pk).update(title=title)
            written = time.perf_counter()
            if not purged.wait(10):
                sys.exit(f"round {round_}: no purge reached Varnish within 10 s")
            to_purge.append(time.perf_counter() - written)
            while title not in get(url)[1]:
                pass
            to_fresh.append(time.perf_counter() - written)
    print(f"ormcache -> Varnish purges: {args.writes} writes, purge_delay {args.purge_delay} s")
    print(f"{'from the write (committed) to':<34} {'median':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, values in (("the purge answered by Varnish", to_purge),
                         ("the first fresh page via Varnish", to_fresh)):  # fmt: skip
        cells = [statistics.median(values), percentile(values, 0.9), percentile(values, 0.99)]
        cells.append(max(values))
        print(f"{name:<34} " + " ".join(f"{v * 1000:>6.1f}ms" for v in cells))


if __name__ == "__main__":
    main()
