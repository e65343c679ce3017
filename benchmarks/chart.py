"""Draw the chart of one run: ``python benchmarks/chart.py RESULTS.json OUT.png [median|min]``.

run.py calls it with the interpreter of benchmarks/.venvs/report (matplotlib). One
panel per backend pair; per operation one bar per library, its speed-up over plain
Django measured in the same environment (plain time ÷ library time; for the mixed
workload, library throughput ÷ plain throughput). Above 1 is faster than plain Django.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

TIMES = "\u00d7"  # the multiplication sign of "2x"
COLORS = {"ormcache": "#2b6cb0", "cachalot": "#dd6b20", "cacheops": "#38a169"}
TITLES = {
    "sqlite-locmem": "SQLite + locmem",
    "sqlite-redis": "SQLite + Redis",
    "postgres-redis": "PostgreSQL + Redis",
}
READS = ("get", "list", "count", "aggregate", "prefetch", "exists")
WRITES = ("save", "update", "create", "m2m_add")
SHORT = {
    "get": "get",
    "list": "list 20",
    "count": "count",
    "aggregate": "aggregate",
    "prefetch": "prefetch",
    "exists": "exists",
    "save": "save",
    "update": "update F()",
    "create": "create",
    "m2m_add": "m2m add",
    "mixed": "95/5 Zipf",
}
COLUMNS = (
    [("hit", k) for k in READS]
    + [("miss", k) for k in READS]
    + [("write", k) for k in WRITES]
    + [("mixed", "mixed")]
)


def speedups(document: dict, statistic: str) -> dict[tuple[str, str, str, str], float]:
    """(backend, library, group, kind) -> speed-up over plain Django in the same env."""
    figures = {}
    for entry in document["summary"]:
        key = (entry["backend"], entry["env"], entry["library"], entry["group"], entry["kind"])
        value = entry[statistic]
        if entry["group"] == "mixed":
            value = entry["operations"] / value  # throughput
        figures[key] = value
    result = {}
    for (backend, env, library, group, kind), value in figures.items():
        if library == "plain":
            continue
        plain = figures.get((backend, env, "plain", group, kind))
        if plain:
            result[backend, library, group, kind] = (
                value / plain if group == "mixed" else plain / value
            )
    return result


def draw(document: dict, out: Path, statistic: str = "median") -> None:
    data = speedups(document, statistic)
    backends = [b for b in document["backends"] if any(k[0] == b for k in data)]
    libraries = [lib for lib in document["libraries"] if any(k[1] == lib for k in data)]
    fig, axes = plt.subplots(
        len(backends), 1, figsize=(13, 3.6 * len(backends)), squeeze=False, sharey=True
    )
    width = 0.8 / max(1, len(libraries))
    for ax, backend in zip(axes[:, 0], backends, strict=True):
        missing: list[str] = []
        for i, library in enumerate(libraries):
            xs, ys = [], []
            for x, (group, kind) in enumerate(COLUMNS):
                value = data.get((backend, library, group, kind))
                if value is not None:
                    xs.append(x + (i - (len(libraries) - 1) / 2) * width)
                    ys.append(value)
            if not xs:
                missing.append(library)  # no bars (cacheops on locmem): said in the legend
                continue
            ax.bar(xs, ys, width, label=library, color=COLORS.get(library), bottom=0)
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{TIMES}"))
        ax.set_title(TITLES.get(backend, backend), loc="left", fontsize=11)
        ax.set_xticks(range(len(COLUMNS)))
        ax.set_xticklabels([SHORT[kind] for _, kind in COLUMNS], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(COLUMNS) - 0.4)
        for boundary in (5.5, 11.5, 15.5):
            ax.axvline(boundary, color="grey", linewidth=0.6, linestyle=":")
        for x, label in ((2.5, "hit"), (8.5, "miss"), (13.5, "write"), (16, "mixed")):
            ax.text(x, 1.02, label, transform=ax.get_xaxis_transform(), ha="center", fontsize=9)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.set_ylabel("speed-up vs plain Django")
        handles, labels = ax.get_legend_handles_labels()
        for library in missing:
            handles.append(Patch(facecolor="white", edgecolor=COLORS.get(library), hatch="//"))
            labels.append(f"{library}: n/a (needs Redis)")
        ax.legend(handles, labels, loc="upper right", fontsize=8, ncol=len(libraries))
    machine = document.get("machine", {})
    fig.suptitle(
        f"ormcache benchmarks ({document.get('profile')} run {document.get('stamp')}, "
        f"{'medians' if statistic == 'median' else 'fastest rounds'}, "
        f"{machine.get('nproc')} {TIMES} {machine.get('cpu')}); higher is better, 1{TIMES} = plain Django",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.splitlines()[0])
    statistic = sys.argv[3] if len(sys.argv) == 4 else "median"
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), statistic)


if __name__ == "__main__":
    main()
