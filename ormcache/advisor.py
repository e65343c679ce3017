"""The policy advisor: which models are good cache candidates, from the collected stats.

``manage.py ormcache advise`` reads each model's counts over a window
(``stats.window``: reads, hits, stores, invalidations and stored bytes, from
every process) and recommends, with its reason, one of:

- ``keep``: the cache serves the model well, or there is too little to judge;
- ``disable``: *volatile* (invalidated about as often as it is read: entries die
  before they are read again) or *rarely read* (a stored result is seldom read
  again: the cache holds what nobody asks for);
- ``fixed``: reads are plentiful but writes cost a good share of them; if its data
  may lag, a fixed lifetime (``longevity.py``) keeps them hits;
- ``raise_timeout``: misses that no write explains: entries expire before they
  are read again.

The rules, in order, with the thresholds of ``ORMCACHE["ADVISOR"]``:

1. fewer than ``min_reads`` reads: keep (too little to judge);
2. hit ratio at least ``good_hit_ratio``: keep;
3. invalidated model, at least ``volatile_ratio`` invalidations per read: disable;
4. invalidated model, at least ``fixed_ratio`` invalidations per read: fixed;
5. fewer than ``min_reuse`` hits per stored entry: disable (rarely read);
6. a timeout: raise it (twice the current one is suggested);
7. otherwise keep: the misses are first reads or evictions.

These are heuristics over approximate counts (see ``stats.py``): the advice is a
place to look, and a human decides, knowing whether the data may lag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps

from . import conf, stats

#: ``ORMCACHE["ADVISOR"]`` options and their defaults.
DEFAULTS: dict[str, Any] = {
    "window": 86400,
    "min_reads": 100,
    "good_hit_ratio": 0.8,
    "volatile_ratio": 0.5,
    "fixed_ratio": 0.05,
    "min_reuse": 0.5,
}
KEEP, DISABLE, FIXED, RAISE_TIMEOUT = "keep", "disable", "fixed", "raise_timeout"


@dataclass(frozen=True)
class Advice:
    """The recommendation for one model, with the numbers behind it."""

    label: str
    policy: str  # "invalidate" or "fixed 60s"
    counts: stats.ModelStats
    recommendation: str
    #: Why, in a word for tools: too_few_reads, good_hit_ratio, volatile, invalidations,
    #: rarely_read, expiry, first_reads.
    cause: str
    reason: str
    #: The policy entry that would apply the recommendation (empty for "keep").
    suggested: dict[str, Any]

    @property
    def invalidation_ratio(self) -> float | None:
        reads = self.counts.reads
        return self.counts.invalidations / reads if reads else None

    def as_dict(self) -> dict[str, Any]:
        counts = self.counts
        return {
            **counts.as_dict(),
            "policy": self.policy,
            "reads": counts.reads,
            "stored_bytes": counts.stored_bytes,
            "reuse": counts.reuse,
            "invalidations_per_read": self.invalidation_ratio,
            "average_entry_bytes": counts.average_entry,
            "recommendation": self.recommendation,
            "cause": self.cause,
            "reason": self.reason,
            "suggested_policy": self.suggested,
        }


def options() -> dict[str, Any]:
    """``ORMCACHE["ADVISOR"]`` over the defaults (bad values are left to the checks)."""
    raw = conf.get_settings().get("ADVISOR")
    if not isinstance(raw, dict):
        return dict(DEFAULTS)
    return {**DEFAULTS, **{key: value for key, value in raw.items() if key in DEFAULTS}}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check(raw: Any) -> list[tuple[int, str, str]]:
    """Problems with ``ORMCACHE["ADVISOR"]`` as (code, message, hint); checks.py reports them."""
    if raw is None:
        return []
    hint = 'For example {"window": 86400, "min_reads": 100, "good_hit_ratio": 0.8}.'
    if not isinstance(raw, dict):
        return [(50, "ORMCACHE['ADVISOR'] must be a dict of thresholds.", hint)]
    problems = []
    unknown = sorted(set(raw) - set(DEFAULTS), key=str)
    if unknown:
        problems.append(
            (
                50,
                f"Unknown ORMCACHE['ADVISOR'] options: {', '.join(map(repr, unknown))}.",
                f"Allowed options: {', '.join(DEFAULTS)}.",
            )
        )
    merged = {**DEFAULTS, **raw}
    for name in ("window", "min_reads"):
        value = merged[name]
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            problems.append((51, f"ADVISOR[{name!r}] must be an int >= 1, got {value!r}.", hint))
    for name in ("good_hit_ratio", "volatile_ratio", "fixed_ratio"):
        value = merged[name]
        if not (_number(value) and 0 < value <= 1):
            problems.append(
                (52, f"ADVISOR[{name!r}] must be a number in (0, 1], got {value!r}.", hint)
            )
    if not (_number(merged["min_reuse"]) and merged["min_reuse"] >= 0):
        problems.append(
            (
                53,
                f"ADVISOR['min_reuse'] must be a number >= 0, got {merged['min_reuse']!r}.",
                "Hits per stored entry below which a model is rarely read; default 0.5.",
            )
        )
    fixed, volatile = merged["fixed_ratio"], merged["volatile_ratio"]
    if _number(fixed) and _number(volatile) and fixed >= volatile:
        problems.append(
            (
                54,
                f"ADVISOR['fixed_ratio'] ({fixed!r}) must be below "
                f"ADVISOR['volatile_ratio'] ({volatile!r}).",
                "Between the two, writes cost enough hits to suggest a fixed lifetime; "
                "from volatile_ratio up, caching the model is not worth it.",
            )
        )
    return problems


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def recommend(
    counts: stats.ModelStats, policy: conf.Policy, thresholds: dict[str, Any]
) -> tuple[str, str, str, dict[str, Any]]:
    """(recommendation, cause, reason, suggested policy entry) for one model's counts."""
    reads, hit_ratio, reuse = counts.reads, counts.hit_ratio, counts.reuse
    if reads < thresholds["min_reads"]:
        minimum = thresholds["min_reads"]
        return KEEP, "too_few_reads", f"too few reads to judge ({reads} < {minimum})", {}
    assert hit_ratio is not None  # there were reads
    if hit_ratio >= thresholds["good_hit_ratio"]:
        return KEEP, "good_hit_ratio", f"hit ratio {_percent(hit_ratio)}", {}
    per_read = counts.invalidations / reads
    if not policy.fixed and per_read >= thresholds["volatile_ratio"]:
        return (
            DISABLE,
            "volatile",
            f"volatile: {counts.invalidations} invalidations for {reads} reads "
            f"(hit ratio {_percent(hit_ratio)}): entries die before they are read again",
            {"enabled": False},
        )
    if not policy.fixed and per_read >= thresholds["fixed_ratio"]:
        return (
            FIXED,
            "invalidations",
            f"hit ratio {_percent(hit_ratio)} with {counts.invalidations} invalidations for "
            f"{reads} reads: if its data may lag by the timeout, a fixed lifetime keeps "
            "those reads hits",
            {"longevity": "fixed", "timeout": policy.timeout or 60},
        )
    if reuse is None or reuse < thresholds["min_reuse"]:
        return (
            DISABLE,
            "rarely_read",
            f"rarely read: {counts.hits} hits for {counts.stores} stored entries "
            f"({_size(counts.stored_bytes)}): stores are seldom read again",
            {"enabled": False},
        )
    if policy.timeout is not None:
        return (
            RAISE_TIMEOUT,
            "expiry",
            f"hit ratio {_percent(hit_ratio)}, misses no write explains: entries expire "
            f"(timeout {policy.timeout} s) before they are read again",
            {"timeout": max(policy.timeout * 2, 60)},
        )
    reason = f"hit ratio {_percent(hit_ratio)}: misses are first reads or evictions"
    return KEEP, "first_reads", reason, {}


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / 1024 / 1024:.1f} MB"


def _describe(policy: conf.Policy) -> str:
    if not policy.enabled:
        return "disabled"
    return f"fixed {policy.timeout}s" if policy.fixed else "invalidate"


def advise(window: float | None = None) -> list[Advice]:
    """Advice for every model with reads or stores in the window (the last ``window``
    seconds; default ``ADVISOR["window"]``), most read first."""
    thresholds = options()
    seconds = window if window is not None else thresholds["window"]
    models = {model._meta.label_lower: model for model in apps.get_models()}
    found = stats.window(seconds, list(models))
    advice = []
    for label, counts in found.items():
        if not (counts.reads or counts.stores):
            continue
        policy = conf.policy_for(models[label])
        found_advice = recommend(counts, policy, thresholds)
        advice.append(Advice(label, _describe(policy), counts, *found_advice))
    return sorted(advice, key=lambda item: (-item.counts.reads, item.label))


_NUMERIC = frozenset({2, 3, 4, 5, 6})


def table(advice: list[Advice]) -> str:
    """The advice as a text table (numbers right-aligned, words left-aligned)."""
    rows = [
        [
            "model",
            "policy",
            "reads",
            "hit ratio",
            "hits/store",
            "inval/read",
            "avg entry",
            "advice",
            "reason",
        ]
    ]
    for item in advice:
        counts = item.counts
        rows.append(
            [
                item.label,
                item.policy,
                str(counts.reads),
                _percent(counts.hit_ratio),
                "-" if counts.reuse is None else f"{counts.reuse:.2f}",
                "-" if item.invalidation_ratio is None else f"{item.invalidation_ratio:.2f}",
                "-" if counts.average_entry is None else _size(counts.average_entry),
                item.recommendation,
                item.reason,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        cells = [
            cell.rjust(width) if i in _NUMERIC else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])
