"""A django-debug-toolbar panel: every read of the request, hit, miss or bypass.

Add it to the toolbar's panels::

    DEBUG_TOOLBAR_PANELS = [
        *debug_toolbar.settings.PANELS_DEFAULTS,
        "ormcache.contrib.debug_toolbar.OrmcachePanel",
    ]

For each read made through ormcache while the request runs, the panel lists
the model, the database, what happened (``hit``, ``miss``, or ``bypass`` with
its reason: not cacheable, written in this transaction, caching disabled...),
the tables the read depends on and the version token of each, as read before
the query ran. It also shows what the page cache did with the response.

It is fed by ``ormcache.reads.recording()``, which is active only while the
panel is enabled for a request: requests without the toolbar pay nothing.
"""

from __future__ import annotations

from typing import Any

from debug_toolbar.panels import Panel

from ormcache import inspection, reads

OUTCOMES = ("hit", "miss", "bypass")
PLURALS = {"hit": "s", "miss": "es", "bypass": "es"}


class OrmcachePanel(Panel):
    """Lists each ormcache read of the request with its outcome, dependencies and versions."""

    title = "ormcache"
    template = "ormcache/debug_toolbar_panel.html"

    @property
    def nav_subtitle(self) -> str:
        counts = self.get_stats().get("counts")
        if not counts:
            return ""
        return ", ".join(
            f"{counts[outcome]} {outcome}{'' if counts[outcome] == 1 else PLURALS[outcome]}"
            for outcome in OUTCOMES
        )

    def process_request(self, request: Any) -> Any:
        with reads.recording() as events:
            response = super().process_request(request)
        self._events = list(events)
        return response

    def generate_stats(self, request: Any, response: Any) -> None:
        events = getattr(self, "_events", [])
        rows = [read_row(number, event) for number, event in enumerate(events, 1)]
        counts = {outcome: sum(row["outcome"] == outcome for row in rows) for outcome in OUTCOMES}
        # Stored by the toolbar as JSON: plain types only.
        self.record_stats(
            {
                "reads": rows,
                "counts": counts,
                "page_cache": inspection.page_cache_header(response) or "",
            }
        )


def read_row(number: int, event: reads.ReadEvent) -> dict[str, Any]:
    """One ReadEvent as the panel shows it."""
    model = event.model
    return {
        "number": number,
        "model": model._meta.label_lower if getattr(model, "_meta", None) else "",
        "database": event.db_alias,
        "outcome": event.outcome,
        "reason": event.reason,
        "tables": sorted(event.tables) if event.tables is not None else None,
        "versions": [
            [key, inspection.describe_token(token, short=True)]
            for key, token in sorted(event.versions.items())
        ],
        "sql": getattr(event, "sql", None) or "",
    }
