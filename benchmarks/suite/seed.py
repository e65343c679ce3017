"""Create the blog tables and fill them with the fixed data set.

    BENCH_LIBRARY=plain BENCH_BACKEND=... python -m suite.seed

run.py calls this once per database kind, into a template that every run copies.
"""

import json
import os
import time

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "suite.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from suite import workload

    started = time.perf_counter()
    call_command("migrate", run_syncdb=True, verbosity=0)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:  # persistent: every copy of the file keeps it
            cursor.execute("PRAGMA journal_mode=WAL")
    counts = workload.seed()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:  # everything in the main file, ready to copy
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    counts["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
