#!/usr/bin/env python3
"""Run the side-by-side benchmarks: plain Django, ormcache, django-cachalot, django-cacheops.

    scripts/bench                       # everything, about 10 minutes on 2 cores
    scripts/bench --quick               # fewer rounds, a few minutes
    scripts/bench --libraries ormcache --backends postgres-redis
    python3 benchmarks/run.py --backends sqlite-locmem --libraries ormcache,cachalot

scripts/bench starts throwaway Redis and PostgreSQL servers (scripts/lib/services.sh)
and calls this with --redis-url and --pg-host; alone, this runs SQLite + locmem only.

The flow, in order:
  1. One virtualenv per library under benchmarks/.venvs/ (ormcache from this checkout,
     the peers from PyPI, the same pinned Django, drivers and pytest-benchmark in each;
     see benchmarks/requirements/), plus one with matplotlib for the chart. A stamp
     file skips pip when the requirements did not change.
  2. (the servers: given on the command line)
  3. The data set, seeded once per database kind: a SQLite file and a PostgreSQL
     template database that every run copies, so every run starts from the same rows.
  4. For every backend pair and every library: plain Django, then the library, each in
     its own pytest-benchmark process in the library's virtualenv, on its own copy of
     the data and an empty cache. So every ratio compares two figures from one
     environment, measured one after the other.
  5. The table of medians and ratios (printed, and as Markdown), the JSON of the whole
     run in benchmarks/results/, and the chart (docs/img/benchmarks.png for a full run).
  6. Always: drop the databases it made and delete its temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SUITE = BENCH / "suite"
TIMES = "\u00d7"  # the multiplication sign of "0.42x"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
REQUIREMENTS = BENCH / "requirements"
DOCS_CHART = REPO / "docs" / "img" / "benchmarks.png"

LIBRARIES = ("ormcache", "cachalot", "cacheops")
BACKENDS = ("sqlite-locmem", "sqlite-redis", "postgres-redis")
BACKEND_TITLES = {
    "sqlite-locmem": "SQLite + locmem",
    "sqlite-redis": "SQLite + Redis",
    "postgres-redis": "PostgreSQL + Redis",
}
#: Backend pairs a library cannot run on, and why (shown in the table).
UNSUPPORTED = {("cacheops", "sqlite-locmem"): "n/a — cacheops requires Redis"}
PACKAGES = {
    "ormcache": "ormcache",
    "cachalot": "django-cachalot",
    "cacheops": "django-cacheops",
}

READS = ("get", "list", "count", "aggregate", "prefetch", "exists")
WRITES = ("save", "update", "create", "m2m_add")
LABELS = {
    "get": "get by pk",
    "list": "20 posts, select_related, by date",
    "count": "comment count of a post",
    "aggregate": "aggregate(Avg, Count)",
    "prefetch": "20 posts, prefetch_related(tags)",
    "exists": "exists(), body__contains",
    "save": "save()",
    "update": "update(F() + 1)",
    "create": "create()",
    "m2m_add": "m2m add()",
    "mixed": "95/5 Zipf (ops/s)",
}

#: Measuring effort: time budget per pedantic benchmark, pytest-benchmark's time per
#: hit benchmark, bounds on rounds, and the size of the mixed run.
PROFILES = {
    "full": {
        "BENCH_BUDGET_MS": 1000,
        "BENCH_MIN_ROUNDS": 15,
        "BENCH_MAX_ROUNDS": 400,
        "BENCH_WARMUP_ROUNDS": 3,
        "BENCH_MIXED_ROUNDS": 4,
        "BENCH_MIXED_OPERATIONS": 300,
        "hit_max_time": 0.6,
        "hit_min_rounds": 20,
    },
    "quick": {
        "BENCH_BUDGET_MS": 300,
        "BENCH_MIN_ROUNDS": 7,
        "BENCH_MAX_ROUNDS": 100,
        "BENCH_WARMUP_ROUNDS": 1,
        "BENCH_MIXED_ROUNDS": 2,
        "BENCH_MIXED_OPERATIONS": 150,
        "hit_max_time": 0.1,
        "hit_min_rounds": 10,
    },
}


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A step failed; the message says which and why."""


# --- virtualenvs ----------------------------------------------------------------------


def python_version(python: str | Path) -> str | None:
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def install_stamp(name: str, python: str) -> str:
    digest = hashlib.sha256()
    digest.update((python_version(python) or "").encode())
    for path in (REQUIREMENTS / "common.txt", REQUIREMENTS / f"{name}.txt"):
        digest.update(path.read_bytes())
    if name == "ormcache":
        digest.update((REPO / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def ensure_venv(name: str, python: str, reinstall: bool) -> Path:
    """The interpreter of benchmarks/.venvs/<name>, created or refreshed as needed."""
    venv = VENVS / name
    venv_python = venv / "bin" / "python"
    stamp_file = venv / ".bench-install-stamp"
    if python_version(venv_python) != python_version(python):
        log(f"{name}: creating virtualenv with {python}")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    stamp = install_stamp(name, python)
    if not reinstall and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        return venv_python
    log(f"{name}: installing {REQUIREMENTS.relative_to(REPO)}/{name}.txt")
    stamp_file.unlink(missing_ok=True)  # a failed install must not look finished
    command = [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["-r", str(REQUIREMENTS / f"{name}.txt")]
    if name == "ormcache":
        command += ["-e", str(REPO)]
    if subprocess.run(command).returncode != 0:
        raise BenchError(f"pip install failed for the {name} virtualenv (see above)")
    stamp_file.write_text(stamp + "\n")
    return venv_python


def versions_in(venv_python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform\n"
        "names = ['Django', 'ormcache', 'django-cachalot', 'django-cacheops', 'django-redis',"
        " 'redis', 'hiredis', 'psycopg', 'pytest-benchmark']\n"
        "found = {'Python': platform.python_version()}\n"
        "for name in names:\n"
        "    try: found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))\n"
    )
    # cwd: not the repository root, whose ormcache.egg-info any interpreter would see.
    out = subprocess.run([str(venv_python), "-c", code], capture_output=True, text=True, cwd=BENCH)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def pg_bindir() -> Path | None:
    """Where PostgreSQL's server tools are (only to report the server's version)."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    # Debian keeps the server tools off PATH, one directory per major version.
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(found[-1]) if found else None


# --- runs -----------------------------------------------------------------------------


#: A configuration's benchmarks run in two processes (reads, then writes and the mixed
#: workload), each alternating with plain Django's: figures compared in a ratio are
#: measured seconds apart, not minutes.
CHUNKS = {"reads": "test_hit or test_miss", "writes": "test_write or test_mixed"}


@dataclass
class Run:
    backend: str
    env: str  # the virtualenv: one per library
    library: str  # "plain" or the env's library
    chunk: str  # which group of benchmarks (CHUNKS)
    repeat: int = 0
    seconds: float = 0.0
    error: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.env}-{self.library}-{self.chunk}-{self.repeat}"

    @property
    def database(self) -> str:
        """Each (backend, env, library, repeat) has its own copy of the data set."""
        return f"bench_{self.env}_{self.library}_{self.repeat}"


@dataclass
class Context:
    workdir: Path
    out_dir: Path
    profile: dict[str, Any]
    pythons: dict[str, Path]
    redis_url: str = ""
    ormcache_settings: str = ""  # JSON merged into ORMCACHE (--ormcache-settings)
    pg: tuple[str, int, str] | None = None
    sqlite_template: Path | None = None
    pg_template: str = ""
    databases: set[str] = field(default_factory=set)  # copies made so far, per backend


def base_env(context: Context, backend: str, library: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "DJANGO_"))}
    env.pop("PYTHONPATH", None)
    env.update(
        PYTHONPATH=str(BENCH),
        PYTHONHASHSEED="0",
        DJANGO_SETTINGS_MODULE="suite.settings",
        BENCH_LIBRARY=library,
        BENCH_BACKEND=backend,
        BENCH_REDIS_URL=context.redis_url,
        BENCH_ORMCACHE_SETTINGS=context.ormcache_settings,
    )
    if context.pg is not None:
        host, port, user = context.pg
        env.update(BENCH_PG_HOST=host, BENCH_PG_PORT=str(port), BENCH_PG_USER=user)
    for key, value in context.profile.items():
        if key.startswith("BENCH_"):
            env[key] = str(value)
    return env


def seed(context: Context, backends: list[str]) -> None:
    python = next(iter(context.pythons.values()))
    kinds = {backend.split("-")[0] for backend in backends}
    if "sqlite" in kinds:
        path = context.workdir / "template.sqlite3"
        env = base_env(context, "sqlite-locmem", "plain") | {"BENCH_SQLITE": str(path)}
        log("seeding the SQLite data set")
        _run_checked([str(python), "-m", "suite.seed"], env)
        context.sqlite_template = path
    if "postgres" in kinds:
        env = base_env(context, "postgres-redis", "plain") | {"BENCH_PG_NAME": "bench_template"}
        _run_checked([str(python), "-m", "suite.pgadmin", "create", "bench_template"], env)
        log("seeding the PostgreSQL data set")
        _run_checked([str(python), "-m", "suite.seed"], env)
        context.pg_template = "bench_template"


def drop_databases(context: Context) -> None:
    python = next(iter(context.pythons.values()))
    env = base_env(context, "postgres-redis", "plain")
    names = [d.split(":", 1)[1] for d in context.databases if d.startswith("postgres")]
    for name in [*names, "bench_template"]:
        subprocess.run(
            [str(python), "-m", "suite.pgadmin", "drop", name], env=env, cwd=BENCH,
            capture_output=True,
        )  # fmt: skip


def _run_checked(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, cwd=BENCH, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return done.stdout


def execute(context: Context, run: Run) -> None:
    """One pytest-benchmark process for one (backend, environment, library)."""
    python = context.pythons[run.env]
    env = base_env(context, run.backend, run.library)
    fresh = f"{run.backend}:{run.database}" not in context.databases
    context.databases.add(f"{run.backend}:{run.database}")
    if run.backend.startswith("sqlite"):
        database = context.workdir / f"{run.database}.sqlite3"
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(context.sqlite_template, database)
        env["BENCH_SQLITE"] = str(database)
    else:
        env["BENCH_PG_NAME"] = run.database
        if fresh:
            _run_checked(
                [str(python), "-m", "suite.pgadmin", "create", run.database, "--template",
                 context.pg_template],
                env,
            )  # fmt: skip
    json_path = context.out_dir / "raw" / f"{run.name}.json"
    log_path = context.out_dir / "logs" / f"{run.name}.log"
    command = [
        str(python), "-m", "pytest", "-c", str(SUITE / "pytest.ini"), "--rootdir", str(SUITE),
        str(SUITE / "bench_orm.py"), "-q", "-k", CHUNKS[run.chunk],
        f"--benchmark-json={json_path}",
        f"--benchmark-max-time={context.profile['hit_max_time']}",
        f"--benchmark-min-rounds={context.profile['hit_min_rounds']}",
        "--benchmark-warmup=on", "--benchmark-warmup-iterations=10",
        "--benchmark-columns=median,iqr,rounds", "--benchmark-sort=name",
    ]  # fmt: skip
    started = time.perf_counter()
    with open(log_path, "w") as output:
        done = subprocess.run(command, env=env, cwd=BENCH, stdout=output, stderr=subprocess.STDOUT)
    run.seconds = time.perf_counter() - started
    if done.returncode != 0 or not json_path.exists():
        tail = log_path.read_text().splitlines()[-15:]
        run.error = f"pytest exited {done.returncode}; see {log_path}"
        print("\n".join(tail), file=sys.stderr)
    if json_path.exists():
        run.results = parse_benchmarks(json.loads(json_path.read_text()))


def parse_benchmarks(data: dict[str, Any]) -> list[dict[str, Any]]:
    parsed = []
    for bench in data.get("benchmarks", []):
        name = bench["name"]
        kind = name[name.index("[") + 1 : -1] if "[" in name else "mixed"
        stats = bench["stats"]
        entry = {
            "group": bench["group"],
            "kind": kind,
            "median": stats["median"],
            "iqr": stats["iqr"],
            "mean": stats["mean"],
            "min": stats["min"],
            "rounds": stats["rounds"],
            "iterations": stats.get("iterations", 1),
            **{k: v for k, v in bench.get("extra_info", {}).items() if k != "mix"},
        }
        if kind == "mixed":
            entry["mix"] = bench["extra_info"].get("mix", {})
        parsed.append(entry)
    return parsed


def plan(
    libraries: list[str], backends: list[str], repeat: int, chunks: list[str] | None = None
) -> list[Run]:
    """Per backend and library: the four chunks, each as plain Django then the library
    or the other way round (alternating), so neither side always goes first."""
    runs = []
    for backend in backends:
        for library in libraries:
            if (library, backend) in UNSUPPORTED:
                continue
            for n in range(repeat):
                for i, chunk in enumerate(CHUNKS):
                    if chunks and chunk not in chunks:
                        continue
                    order = ("plain", library) if (i + n) % 2 == 0 else (library, "plain")
                    runs.extend(Run(backend, library, side, chunk, n) for side in order)
    return runs


# --- figures --------------------------------------------------------------------------


def summarise(runs: list[Run], statistic: str) -> dict[tuple[str, ...], dict[str, Any]]:
    """(backend, env, library, group, kind) -> the figures of that benchmark.

    ``value`` is the figure the table shows: with ``"median"``, the median of the
    medians of the repeats; with ``"min"``, the fastest round of all repeats.
    """
    collected: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        for entry in run.results:
            key = (run.backend, run.env, run.library, entry["group"], entry["kind"])
            collected.setdefault(key, []).append(entry)
    summary = {}
    for key, entries in collected.items():
        median = statistics.median(entry["median"] for entry in entries)
        fastest = min(entry["min"] for entry in entries)
        summary[key] = {
            **entries[0],
            "median": median,
            "min": fastest,
            "value": fastest if statistic == "min" else median,
            "repeats": [e["median"] for e in entries],
        }
    return summary


def figure(summary, backend, env, library, group, kind) -> float | None:
    entry = summary.get((backend, env, library, group, kind))
    return None if entry is None else entry["value"]


def ratio(summary, backend, library, group, kind) -> float | None:
    """Library time ÷ plain Django time, both from the library's environment."""
    lib = figure(summary, backend, library, library, group, kind)
    plain = figure(summary, backend, library, "plain", group, kind)
    if lib is None or plain is None or plain == 0:
        return None
    return lib / plain


def throughput(summary, backend, env, library) -> float | None:
    entry = summary.get((backend, env, library, "mixed", "mixed"))
    if entry is None:
        return None
    return entry["operations"] / entry["value"]


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-4:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e6:.1f} µs"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}{TIMES}"


ROWS = (
    [("hit", kind) for kind in READS]
    + [("miss", kind) for kind in READS]
    + [("write", kind) for kind in WRITES]
    + [("mixed", "mixed")]
)


def table_rows(summary, backend: str, libraries: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one backend's table (cells as text)."""
    header = ["", "operation"]
    for library in libraries:
        header += [f"plain ({library} env)", library, "ratio"]
    rows = []
    for group, kind in ROWS:
        row = [group, LABELS[kind]]
        for library in libraries:
            if (library, backend) in UNSUPPORTED:
                row += [
                    "",
                    UNSUPPORTED[(library, backend)] if group == "hit" and kind == "get" else "",
                    "",
                ]
                continue
            if group == "mixed":
                plain = throughput(summary, backend, library, "plain")
                lib = throughput(summary, backend, library, library)
                row += [
                    "—" if plain is None else f"{plain:,.0f}",
                    "—" if lib is None else f"{lib:,.0f}",
                    fmt_ratio(plain / lib if plain and lib else None),
                ]
                continue
            entry = summary.get((backend, library, library, group, kind), {})
            mark = ""
            if group == "hit" and entry.get("queries"):
                mark = " *"  # the hit still sent SQL
            if group == "miss" and entry.get("queries") == 0:
                mark = " †"  # the write did not invalidate the read
            row += [
                fmt_time(figure(summary, backend, library, "plain", group, kind)),
                fmt_time(figure(summary, backend, library, library, group, kind)) + mark,
                fmt_ratio(ratio(summary, backend, library, group, kind)),
            ]
        rows.append(row)
    return header, rows


STATISTICS = {"median": "medians", "min": "fastest rounds"}
NOTES = (
    "ratio: the library's figure ÷ plain Django's, both measured in the library's "
    "environment in the same run (below 1 is faster; for the mixed row, plain throughput ÷ "
    "library throughput).\n"
    "* the hit still sent SQL statements   † the 'miss' sent none: the write did not "
    "invalidate the read"
)


def _aligned(row: list[str], widths: list[int], *, free_last: bool = False) -> str:
    """One line of a text table: the first two columns to the left, the others to the
    right; with ``free_last`` the last column is free text, not padded."""
    cells = []
    for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
        if free_last and i == len(widths) - 1:
            cells.append(cell)
        else:
            cells.append(cell.ljust(width) if i < 2 else cell.rjust(width))
    return "  ".join(cells)


def format_text(summary, backends: list[str], libraries: list[str], statistic: str) -> str:
    lines = []
    for backend in backends:
        header, rows = table_rows(summary, backend, libraries)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append(f"\n{BACKEND_TITLES[backend]}  ({STATISTICS[statistic]})")
        lines.append(_aligned(header, widths))
        lines.append("  ".join("-" * w for w in widths))
        previous = None
        for row in rows:
            if previous is not None and row[0] != previous:
                lines.append("")
            previous = row[0]
            lines.append(_aligned(row, widths))
    lines.append("\n" + NOTES)
    return "\n".join(lines)


def format_markdown(summary, backends: list[str], libraries: list[str], statistic: str) -> str:
    parts = []
    for backend in backends:
        header, rows = table_rows(summary, backend, libraries)
        parts.append(f"### {BACKEND_TITLES[backend]} ({STATISTICS[statistic]})\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|")
        for row in rows:
            parts.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        parts.append("")
    parts.append(NOTES.replace("\n", "\n\n").replace("*", "\\*", 1))
    return "\n".join(parts)


def mixed_rows(summary, backends: list[str], libraries: list[str]) -> list[list[str]]:
    """Per backend and library, the mixed workload: throughput, the share of its reads
    served without SQL, and its stale answers on re-check (issue 10)."""
    found = []
    for backend in backends:
        for library in ["plain", *libraries]:
            envs = libraries if library == "plain" else [library]
            for env in envs[:1]:
                entry = summary.get((backend, env, library, "mixed", "mixed"))
                if entry is None:
                    continue
                served = entry.get("reads_without_sql")
                by_kind = entry.get("reads_without_sql_by_kind") or {}
                stale, checked = entry.get("stale"), entry.get("rechecked")
                found.append(
                    [
                        BACKEND_TITLES[backend],
                        library,
                        f"{throughput(summary, backend, env, library) or 0:.0f}",
                        "" if served is None else f"{served:.0%}",
                        "" if stale is None else f"{stale} of {checked}",
                        " ".join(f"{kind} {share:.0%}" for kind, share in by_kind.items()),
                    ]
                )
    return found


MIXED_HEADER = [
    "backend",
    "library",
    "ops/s",
    "reads without SQL",
    "stale on re-check",
    "without SQL, per read",
]


def format_mixed(summary, backends: list[str], libraries: list[str], markdown: bool) -> str:
    rows = mixed_rows(summary, backends, libraries)
    if not rows:
        return ""
    if markdown:
        lines = ["### Mixed workload: reads served without SQL, stale answers\n"]
        lines.append("| " + " | ".join(MIXED_HEADER) + " |")
        lines.append("|---|---|---:|---:|---:|---|")
        lines.extend("| " + " | ".join(row) + " |" for row in rows)
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [MIXED_HEADER, *rows]) for i in range(len(MIXED_HEADER))]
    lines = ["\nMixed workload: reads served without SQL, stale answers on re-check"]
    lines.extend(_aligned(row, widths, free_last=True) for row in [MIXED_HEADER, *rows])
    return "\n".join(lines)


# --- targets of issue 7 ---------------------------------------------------------------

HIT_TARGETS = {
    "get": 0.5,
    "count": 0.5,
    "aggregate": 0.5,
    "exists": 0.5,
    "list": 0.8,
    "prefetch": 0.8,
}


def check_targets(summary, backends: list[str]) -> list[dict[str, Any]]:
    """ormcache against the targets of issue 7. Peer comparisons use each library's
    ratio to plain Django in its own environment, which cancels drift between envs."""
    checks = []

    def add(target: str, backend: str, value: float | None, limit: float, better: str) -> None:
        if value is None:
            return
        ok = value <= limit if better == "lower" else value >= limit
        checks.append(
            {"target": target, "backend": backend, "value": value, "limit": limit,
             "better": better, "met": ok}
        )  # fmt: skip

    for backend in backends:
        peers = [p for p in ("cachalot", "cacheops") if (p, backend) not in UNSUPPORTED]
        for kind, limit in HIT_TARGETS.items():
            mine = ratio(summary, backend, "ormcache", "hit", kind)
            theirs = [r for p in peers if (r := ratio(summary, backend, p, "hit", kind))]
            if mine is not None and theirs:
                add(f"hit {kind} ÷ faster peer's hit", backend, mine / min(theirs), limit, "lower")
        add(
            "get hit ÷ plain",
            backend,
            ratio(summary, backend, "ormcache", "hit", "get"),
            0.4,
            "lower",
        )
        miss_limit = 1.10 if backend.endswith("locmem") else 1.25
        for kind in READS:
            add(
                f"miss {kind} ÷ plain",
                backend,
                ratio(summary, backend, "ormcache", "miss", kind),
                miss_limit,
                "lower",
            )
        for kind in WRITES:
            add(
                f"write {kind} ÷ plain",
                backend,
                ratio(summary, backend, "ormcache", "write", kind),
                1.10,
                "lower",
            )
        mine = _speedup(summary, backend, "ormcache")
        theirs = [s for p in peers if (s := _speedup(summary, backend, p))]
        if mine is not None and theirs:
            add("mixed throughput ÷ faster peer's", backend, mine / max(theirs), 1.5, "higher")
    if {"sqlite-redis", "sqlite-locmem"} <= set(backends):
        # The L1 target: same database, only the cache differs.
        for kind in READS:
            redis = figure(summary, "sqlite-redis", "ormcache", "ormcache", "hit", kind)
            locmem = figure(summary, "sqlite-locmem", "ormcache", "ormcache", "hit", kind)
            if redis and locmem:
                add(f"Redis hit {kind} ÷ locmem hit", "sqlite-redis", redis / locmem, 1.3, "lower")
    return checks


def _speedup(summary, backend: str, library: str) -> float | None:
    plain = throughput(summary, backend, library, "plain")
    lib = throughput(summary, backend, library, library)
    return lib / plain if plain and lib else None


def format_targets(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return ""
    lines = ["\nTargets of issue 7 (ormcache; figures from this run):"]
    width = max(len(c["target"]) for c in checks)
    for check in checks:
        sign = "≤" if check["better"] == "lower" else "≥"
        verdict = "met" if check["met"] else f"MISSED by {_miss_factor(check):.2f}{TIMES}"
        lines.append(
            f"  {check['target'].ljust(width)}  {BACKEND_TITLES[check['backend']]:<20} "
            f"{check['value']:6.2f}  (target {sign} {check['limit']:.2f})  {verdict}"
        )
    missed = sum(not c["met"] for c in checks)
    lines.append(f"  {len(checks) - missed} met, {missed} missed")
    return "\n".join(lines)


def _miss_factor(check: dict[str, Any]) -> float:
    if check["better"] == "lower":
        return check["value"] / check["limit"]
    return check["limit"] / check["value"]


# --- machine --------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "system": f"{platform.system()} {platform.release()}",
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        info["redis"] = (
            subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True, check=True
            )
            .stdout.split()[2]
            .removeprefix("v=")
        )
    bindir = pg_bindir()
    if bindir is not None:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            info["postgresql"] = subprocess.run(
                [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
            ).stdout.split()[2]  # "postgres (PostgreSQL) 15.18 (Debian ...)"
    return info


def source_digest() -> str:
    """A digest of ormcache's sources as measured (the checkout may be dirty)."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "ormcache").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return done.stdout.strip()


# --- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parser.add_argument(
        "--libraries", default=",".join(LIBRARIES), help="comma-separated, default: all"
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument(
        "--chunks",
        default=",".join(CHUNKS),
        help="comma-separated: reads (hits, misses), writes (writes and the mixed workload)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each (plain, library) pair N times, "
        "interleaved, and report the median of the medians",
    )  # fmt: skip
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    parser.add_argument("--reinstall", action="store_true", help="pip install again")
    parser.add_argument("--redis-url", help="the Redis for the *-redis backends and cacheops")
    parser.add_argument("--pg-host", help="the PostgreSQL for the postgres-* backends")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument(
        "--ormcache-settings", metavar="JSON",
        help='merged into ORMCACHE for the ormcache runs, e.g. \'{"L1": {...}}\'',
    )  # fmt: skip
    parser.add_argument(
        "--statistic", choices=["median", "min"], default="median",
        help="the figure the table shows: the median round (default) or the fastest round, "
        "which other work on a busy machine disturbs least",
    )  # fmt: skip
    parser.add_argument(
        "--report", metavar="JSON", help="print the table of a finished run (no measuring)"
    )
    parser.add_argument("--chart", help="where to draw the chart (default: see README)")
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args(argv)
    args.libraries = [x for x in args.libraries.split(",") if x]
    args.backends = [x for x in args.backends.split(",") if x]
    args.chunks = [x for x in args.chunks.split(",") if x]
    for value, allowed in (
        (args.libraries, LIBRARIES),
        (args.backends, BACKENDS),
        (args.chunks, tuple(CHUNKS)),
    ):
        unknown = set(value) - set(allowed)
        if unknown:
            parser.error(f"unknown {', '.join(sorted(unknown))}; choose from {', '.join(allowed)}")
    missing_redis = any(b.endswith("redis") for b in args.backends) and not args.redis_url
    missing_pg = any(b.startswith("postgres") for b in args.backends) and not args.pg_host
    if not args.report and (missing_redis or missing_pg):
        parser.error(
            "the Redis and PostgreSQL backends need --redis-url and --pg-host: scripts/bench "
            "starts throwaway servers and passes them (or use --backends sqlite-locmem)"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        document = json.loads(Path(args.report).read_text())
        stamp = document["stamp"]
        report(document, args.statistic, RESULTS / f"{stamp}-{args.statistic}.md")
        if not args.no_chart:
            chart = Path(args.chart) if args.chart else RESULTS / f"{stamp}-{args.statistic}.png"
            draw_chart(args.python, args.reinstall, Path(args.report), chart, args.statistic)
        return 0
    document = measure(args)
    stamp = document["stamp"]
    json_path = RESULTS / f"{stamp}.json"
    json_path.write_text(json.dumps(document, indent=1, default=str))
    shutil.copyfile(json_path, RESULTS / "latest.json")
    report(document, args.statistic, RESULTS / f"{stamp}.md")
    log(f"wrote {json_path.relative_to(REPO)}, {stamp}.md and {stamp}/ (raw data, logs)")
    if not args.no_chart:
        full = (
            not args.quick
            and set(args.libraries) == set(LIBRARIES)
            and set(args.backends) == set(BACKENDS)
            and set(args.chunks) == set(CHUNKS)
        )
        chart = RESULTS / f"{stamp}.png"
        if args.chart:
            chart = Path(args.chart)
        elif full and args.statistic == "median":
            chart = DOCS_CHART
        draw_chart(args.python, args.reinstall, json_path, chart, args.statistic)
    failed = [run for run in document["runs"] if run["error"]]
    if failed:
        log(f"{len(failed)} run(s) failed; see their logs in benchmarks/results/{stamp}/logs/")
        return 1
    return 0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run everything; the whole run as a JSON-ready document."""
    # exit (rather than dying) on SIGTERM, so that the finally below cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile_name = "quick" if args.quick else "full"
    profile = PROFILES[profile_name]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = RESULTS / stamp
    (out_dir / "raw").mkdir(parents=True)
    (out_dir / "logs").mkdir()
    started = time.perf_counter()

    pythons = {name: ensure_venv(name, args.python, args.reinstall) for name in args.libraries}
    digest = source_digest()  # before the runs: what they measure
    versions = {name: versions_in(python) for name, python in pythons.items()}
    machine = machine_info()
    runs = plan(args.libraries, args.backends, args.repeat, args.chunks)
    if not runs:
        raise BenchError("nothing to run: " + ", ".join(UNSUPPORTED.values()))

    workdir = Path(tempfile.mkdtemp(prefix="ormcache-bench."))
    context = Context(
        workdir,
        out_dir,
        profile,
        pythons,
        redis_url=args.redis_url or "",
        ormcache_settings=args.ormcache_settings or "",
    )
    if args.pg_host:
        context.pg = (args.pg_host, args.pg_port, args.pg_user)
    try:
        seed(context, sorted({r.backend for r in runs}))
        for n, run in enumerate(runs, 1):
            side = "plain Django" if run.library == "plain" else run.library
            execute(context, run)
            status = f"FAILED: {run.error}" if run.error else f"{run.seconds:.0f} s"
            log(
                f"[{n}/{len(runs)}] {BACKEND_TITLES[run.backend]}, {run.env} env, {side}, "
                f"{run.chunk}: {status}"
            )
    finally:
        if context.pg is not None:
            drop_databases(context)
        shutil.rmtree(workdir, ignore_errors=True)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    summary = summarise(runs, "median")
    return {
        "stamp": stamp,
        "profile": profile_name,
        "profile_settings": profile,
        "commit": git_commit(),
        "ormcache_sources": digest,
        "elapsed_seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "versions": versions,
        "libraries": args.libraries,
        "backends": args.backends,
        "ormcache_settings": json.loads(args.ormcache_settings or "{}"),
        "runs": [asdict(run) for run in runs],
        "summary": [
            {"backend": k[0], "env": k[1], "library": k[2], "group": k[3], "kind": k[4], **v}
            for k, v in sorted(summary.items())
        ],
        "targets": check_targets(summary, args.backends) if "ormcache" in args.libraries else [],
    }


def report(document: dict[str, Any], statistic: str, markdown: Path | None) -> None:
    """Print the table and the targets of a run (and write them as Markdown)."""
    runs = [Run(**run) for run in document["runs"]]
    summary = summarise(runs, statistic)
    backends, libraries = document["backends"], document["libraries"]
    checks = check_targets(summary, backends) if "ormcache" in libraries else []
    machine = document["machine"]
    header = (
        f"ormcache benchmarks, {document['stamp']} ({document['profile']} run, "
        f"{document['elapsed_seconds'] / 60:.1f} min), commit {document['commit']}, "
        f"ormcache sources {document['ormcache_sources']}\n"
        f"machine: {machine['nproc']} {TIMES} {machine['cpu']}, load average "
        f"{machine['load_average_start'][0]} at start, {machine['load_average_end'][0]} at end\n"
        + "\n".join(
            f"{name} env: " + ", ".join(f"{k} {v}" for k, v in found.items())
            for name, found in document["versions"].items()
        )
    )
    print("\n" + header)
    print(format_text(summary, backends, libraries, statistic))
    print(format_mixed(summary, backends, libraries, markdown=False))
    print(format_targets(checks))
    if markdown is not None:
        markdown.write_text(
            header.replace("\n", "  \n")
            + "\n\n"
            + format_markdown(summary, backends, libraries, statistic)
            + "\n"
            + format_mixed(summary, backends, libraries, markdown=True)
            + "\n"
            + format_targets(checks).replace("\n  ", "\n    ")
            + "\n"
        )


def draw_chart(python: str, reinstall: bool, json_path: Path, chart: Path, statistic: str) -> None:
    try:
        report_python = ensure_venv("report", python, reinstall)
    except (BenchError, subprocess.CalledProcessError) as exc:
        log(f"no chart: {exc}")
        return
    chart.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(report_python), str(BENCH / "chart.py"), str(json_path), str(chart), statistic]
    )
    if done.returncode == 0:
        log(f"chart: {chart}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(1)
