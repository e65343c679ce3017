"""The admin's stats page: counts per model and the hit ratio over time, for staff only.

Add it to your URLconf, before the admin's own URLs::

    urlpatterns = [
        path("admin/ormcache/", include("ormcache.contrib.admin")),
        path("admin/", admin.site.urls),
        ...
    ]

The page is wrapped by ``admin.site.admin_view``: only active staff users see it
(others are sent to the admin's login page), and it looks like the rest of the
admin. It reads the shared counters of ``ormcache.stats`` (turn them on with
``ORMCACHE["STATS"] = {"enabled": True}``); the chart is the hit ratio of every
history bucket the cache keeps, drawn as inline SVG (no JavaScript, no assets).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from ormcache import stats

app_name = "ormcache"

#: Chart windows offered on the page, in history samples (1 h, 6 h, 24 h at 60 s a sample).
WINDOWS = (60, 360, 1440)
CHART_WIDTH, CHART_HEIGHT = 900, 220
_PAD_LEFT, _PAD_BOTTOM, _PAD_TOP = 44, 22, 8


def stats_view(request: HttpRequest) -> HttpResponse:
    """The stats page (wrap with ``admin.site.admin_view``: see ``urlpatterns``)."""
    options = stats.options()
    interval, length = options["history_interval"], options["history_length"]
    windows = [w for w in WINDOWS if w < length] + [length]
    try:
        samples_wanted = int(request.GET.get("samples") or windows[0])
    except ValueError:
        samples_wanted = windows[0]
    if samples_wanted not in windows:
        samples_wanted = windows[0]
    samples = stats.history(samples=samples_wanted)
    per_model = stats.read()
    rows = sorted(per_model.values(), key=lambda s: (-s.reads, s.label))
    context = {
        **admin.site.each_context(request),
        "title": "ormcache stats",
        "enabled": stats.is_enabled(),
        "options": options,
        "rows": [_row(item) for item in rows],
        "total": _row(stats.totals(per_model)),
        "chart": chart(samples),
        "window": samples_wanted,
        "windows": [{"samples": w, "label": _duration(w * interval)} for w in windows],
        "kept": _duration(interval * length),
    }
    return TemplateResponse(request, "ormcache/admin_stats.html", context)


def _row(item: stats.ModelStats) -> dict[str, Any]:
    ratio = item.hit_ratio
    return {
        "label": item.label,
        "hits": item.hits,
        "misses": item.misses,
        "stores": item.stores,
        "invalidations": item.invalidations,
        "ratio": "-" if ratio is None else f"{ratio:.1%}",
        "percent": 0 if ratio is None else round(ratio * 100, 1),
    }


def chart(samples: list[stats.Sample]) -> dict[str, Any]:
    """Coordinates for the SVG: the hit-ratio line (broken where nothing was read),
    bars for the number of reads, and axis labels."""
    width, height = CHART_WIDTH, CHART_HEIGHT
    plot_w = width - _PAD_LEFT - 8
    plot_h = height - _PAD_BOTTOM - _PAD_TOP
    count = max(len(samples), 1)
    step = plot_w / count
    busiest = max((s.hits + s.misses for s in samples), default=0) or 1

    def x(index: int) -> float:
        return round(_PAD_LEFT + (index + 0.5) * step, 1)

    def y(ratio: float) -> float:
        return round(_PAD_TOP + (1 - ratio) * plot_h, 1)

    segments: list[list[str]] = [[]]
    points = []
    bars = []
    for index, sample in enumerate(samples):
        reads = sample.hits + sample.misses
        if reads:
            bar_h = round(reads / busiest * plot_h * 0.35, 1)
            bars.append(
                {
                    "x": round(x(index) - step * 0.4, 1),
                    "y": round(_PAD_TOP + plot_h - bar_h, 1),
                    "w": round(max(step * 0.8, 0.5), 1),
                    "h": bar_h,
                }
            )
        ratio = sample.hit_ratio
        if ratio is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{x(index)},{y(ratio)}")
        points.append(
            {
                "x": x(index),
                "y": y(ratio),
                "title": f"{_clock(sample.start)}: {ratio:.1%} of {reads} reads",
            }
        )
    grid = [{"y": y(v / 100), "label": f"{v}%"} for v in (0, 25, 50, 75, 100)]
    ticks = []
    if samples:
        for index in sorted({0, len(samples) // 2, len(samples) - 1}):
            ticks.append({"x": x(index), "label": _clock(samples[index].start)})
    return {
        "width": width,
        "height": height,
        "left": _PAD_LEFT,
        "right": width - 8,
        "bottom": _PAD_TOP + plot_h,
        "lines": [" ".join(segment) for segment in segments if segment],
        "points": points if len(points) <= 120 else [],
        "bars": bars,
        "grid": grid,
        "ticks": ticks,
        "label_y": height - 4,
        "center_x": round(_PAD_LEFT + plot_w / 2),
        "center_y": round(_PAD_TOP + plot_h / 2),
        "empty": not any(s.hits + s.misses for s in samples),
    }


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _clock(start: float) -> str:
    moment = datetime.datetime.fromtimestamp(start, tz=datetime.timezone.utc)
    return moment.strftime("%H:%M:%S UTC" if start % 60 else "%H:%M UTC")


urlpatterns = [
    path("", admin.site.admin_view(stats_view), name="stats"),
]
