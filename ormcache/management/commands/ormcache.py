"""``manage.py ormcache``: look at the cache and act on it from the command line.

    manage.py ormcache stats [--all] [--json] [--reset]
    manage.py ormcache invalidate [app_label.model | app_label ...]   # none: everything
    manage.py ormcache inspect blog.post
    manage.py ormcache inspect /post/1/ [--user alice] [--host example.com]
    manage.py ormcache advise [--window SECONDS] [--format table|json]
    manage.py ormcache triggers install|uninstall|status [--database ALIAS]
    manage.py ormcache listen [--database ALIAS ...]

``manage.py check`` is Django's own and runs ormcache's system checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

import ormcache
from ormcache import advisor, inspection, stats


class Command(BaseCommand):
    help = "ormcache: stats per model, invalidation, and what a model or a URL depends on."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(
            dest="subcommand", metavar="{stats,invalidate,inspect,advise,triggers,listen}"
        )
        commands.required = True

        shown = commands.add_parser(
            "stats",
            help="hits, misses, stores, invalidations, results not stored and hit ratio per model",
            description="The shared counters of every process (ORMCACHE['STATS']). Other "
            "processes add theirs every flush_interval seconds.",
        )
        shown.add_argument("--all", action="store_true", help="also list models with no counts")
        shown.add_argument("--json", action="store_true", help="print JSON instead of a table")
        shown.add_argument("--reset", action="store_true", help="set every counter to zero")

        invalidate = commands.add_parser(
            "invalidate",
            help="make cached reads of some models (or of everything) misses",
            description="Bump the versions of the models' tables on every database alias, "
            "as ormcache.invalidate() does. Without labels: everything "
            "(ormcache.invalidate_all()).",
        )
        invalidate.add_argument(
            "labels", nargs="*", metavar="label", help="'app_label.model_name' or 'app_label'"
        )

        inspect = commands.add_parser(
            "inspect",
            help="the keys, dependencies and versions that apply to a model or a URL",
            description="For a model ('blog.post'): its policy, tables, version keys and their "
            "current tokens on every database alias. For a URL ('/post/1/'): runs a GET "
            "through the whole stack, as the test client does (the view runs, and so do its "
            "writes), and shows every read it made, the page cache key and the versions.",
        )
        inspect.add_argument("target", help="'app_label.model_name', or a path such as /post/1/")
        inspect.add_argument("--user", help="for a URL: request it logged in as this username")
        inspect.add_argument("--host", help="for a URL: the Host header (default: ALLOWED_HOSTS)")
        inspect.add_argument("--json", action="store_true", help="print JSON")

        # Writes outside Django (PostgreSQL): ormcache/triggers.py, ormcache/listener.py.
        installed = commands.add_parser(
            "triggers",
            help="install, uninstall or show the NOTIFY triggers on the cached tables",
            description="Statement-level triggers that NOTIFY on every write to a cached "
            "table, so that `ormcache listen` can bump versions for writes made outside "
            "Django (psql, other services, database-level cascades). PostgreSQL only.",
        )
        installed.add_argument("action", choices=("install", "uninstall", "status"))
        installed.add_argument(
            "--database",
            action="append",
            help="database alias (repeatable; default: ORMCACHE['TRIGGERS']['databases'])",
        )
        listen = commands.add_parser(
            "listen",
            help="bump versions from the triggers' notifications (run it beside the app)",
            description="LISTENs on ORMCACHE['TRIGGERS']['channel'] of each database and "
            "bumps the versions of the tables that transactions outside Django wrote, "
            "right after they commit. Stops on Ctrl-C / SIGTERM.",
        )
        listen.add_argument(
            "--database",
            action="append",
            help="database alias (repeatable; default: ORMCACHE['TRIGGERS']['databases'])",
        )

        advise = commands.add_parser(
            "advise",
            help="per model: keep, disable, fixed lifetime or a longer timeout, and why",
            description="Reads the stats of every process over a window (ORMCACHE['STATS'] "
            "must be on) and recommends a policy per model, with thresholds from "
            "ORMCACHE['ADVISOR'].",
        )
        advise.add_argument(
            "--window", type=int, help="seconds of stats to judge (default: ADVISOR['window'])"
        )
        advise.add_argument("--format", choices=("table", "json"), default="table")

    def handle(self, *args: Any, **options: Any) -> None:
        handler = getattr(self, f"handle_{options['subcommand']}")
        handler(**options)

    # --- stats ---------------------------------------------------------------------------

    def handle_stats(
        self, *, all: bool = False, json: bool = False, reset: bool = False, **_: Any
    ) -> None:
        if reset:
            stats.reset()
            self.stdout.write("Stats reset.")
            return
        found = stats.read()
        if all:
            found = {
                label: found.get(label, stats.ModelStats(label)) for label in stats.known_labels()
            }
        total = stats.totals(found)
        if json:
            self.stdout.write(_dumps([inspection.stats_dict(s) for s in (*found.values(), total)]))
            return
        if not stats.is_enabled():
            self.stderr.write(
                self.style.WARNING(
                    "Stats are off in this project: set ORMCACHE['STATS'] = {'enabled': True}."
                )
            )
        rows = [_stats_row(s) for s in found.values()]
        self.stdout.write(
            _table(
                ["model", "hits", "misses", "stores", "invalidations", "not stored", "hit ratio"],
                rows,
                footer=_stats_row(total),
            )
        )
        interval = stats.options()["flush_interval"]
        self.stdout.write(
            f"Other processes add their counts every {interval} s "
            "(ORMCACHE['STATS']['flush_interval'])."
        )

    # --- advise --------------------------------------------------------------------------

    def handle_advise(self, *, window: int | None, format: str, **_: Any) -> None:
        if not stats.is_enabled():
            self.stderr.write(
                self.style.WARNING(
                    "Stats are off in this project: set ORMCACHE['STATS'] = {'enabled': True} "
                    "and let it run under real traffic first."
                )
            )
        found = advisor.advise(window)
        if format == "json":
            self.stdout.write(_dumps([item.as_dict() for item in found]))
            return
        seconds = window if window is not None else advisor.options()["window"]
        self.stdout.write(advisor.table(found))
        self.stdout.write(f"Window: the last {seconds} s of stats (whole buckets).")

    # --- invalidate ----------------------------------------------------------------------

    def handle_invalidate(self, *, labels: list[str], **_: Any) -> None:
        if not labels:
            ormcache.invalidate_all()
            self.stdout.write(self.style.SUCCESS("Invalidated everything, on every database."))
            return
        models = _models_for(labels)
        ormcache.invalidate(*models)
        names = ", ".join(sorted(m._meta.label_lower for m in models))
        self.stdout.write(self.style.SUCCESS(f"Invalidated {names}."))

    # --- inspect -------------------------------------------------------------------------

    def handle_inspect(
        self, *, target: str, user: str | None, host: str | None, json: bool = False, **_: Any
    ) -> None:
        if target.startswith(("/", "http://", "https://")):
            try:
                report = inspection.inspect_url(target, username=user, host=host)
            except LookupError as exc:
                raise CommandError(str(exc)) from exc
        else:
            report = inspection.inspect_model(_models_for([target])[0])
        if json:
            self.stdout.write(_dumps(report))
        else:
            self.stdout.write(_format_report(report))

    # --- triggers and listen -------------------------------------------------------------

    def handle_triggers(self, *, action: str, database: list[str] | None, **_: Any) -> None:
        from ormcache import triggers

        for alias in _trigger_databases(database):
            if action == "install":
                tables = triggers.install(alias)
                self.stdout.write(self.style.SUCCESS(f"{alias}: triggers on {len(tables)} tables."))
            elif action == "uninstall":
                tables = triggers.uninstall(alias)
                self.stdout.write(
                    self.style.SUCCESS(f"{alias}: dropped the triggers of {len(tables)} tables.")
                )
            else:
                found = triggers.status(alias)
                self.stdout.write(
                    f"{alias}: {len(found.cached)} cached tables, "
                    f"{len(found.cached) - len(found.missing)} with a trigger"
                )
                for table in found.missing:
                    self.stdout.write(f"  missing: {table}")
                for table in found.extra:
                    self.stdout.write(f"  not cached, has a trigger: {table}")

    def handle_listen(self, *, database: list[str] | None, **_: Any) -> None:
        import signal
        import threading

        from ormcache import listener

        aliases = _trigger_databases(database)

        def stop(*_: Any) -> None:
            raise KeyboardInterrupt

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)
        self.stdout.write(f"Listening on {', '.join(aliases)}; Ctrl-C stops.")
        self.stdout.flush()
        listener.run_forever(aliases)
        self.stdout.write("Stopped.")


def _trigger_databases(requested: list[str] | None) -> list[str]:
    from django.db import connections

    from ormcache import triggers

    aliases = requested or triggers.options().get("databases") or ["default"]
    for alias in aliases:
        if alias not in connections:
            raise CommandError(f"{alias!r} is not a database alias.")
        if connections[alias].vendor != "postgresql":
            raise CommandError(f"{alias!r} is not PostgreSQL: triggers need PostgreSQL.")
    return list(aliases)


def _models_for(labels: Iterable[str]) -> list[Any]:
    models: list[Any] = []
    for label in labels:
        try:
            if "." in label:
                models.append(apps.get_model(label))
            else:
                models.extend(apps.get_app_config(label).get_models())
        except (LookupError, ValueError) as exc:
            raise CommandError(
                f"{label!r} is not an installed model ('app_label.model_name') or app label."
            ) from exc
    return models


# --- output --------------------------------------------------------------------------------


def _stats_row(item: stats.ModelStats) -> list[str]:
    ratio = "-" if item.hit_ratio is None else f"{item.hit_ratio:.1%}"
    return [
        item.label,
        str(item.hits),
        str(item.misses),
        str(item.stores),
        str(item.invalidations),
        str(item.not_stored),
        ratio,
    ]


def _table(header: list[str], rows: list[list[str]], footer: list[str] | None = None) -> str:
    widths = [
        max(len(row[i]) for row in [header, *rows, *([footer] if footer else [])])
        for i in range(len(header))
    ]

    def line(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(header), rule, *(line(row) for row in rows)]
    if footer:
        out += [rule, line(footer)]
    return "\n".join(out)


def _format_report(report: dict[str, Any]) -> str:
    out = []
    if report["kind"] == "model":
        policy = report["policy"]
        out.append(f"Model {report['model']}")
        out.append(
            f"  manager: {report['manager']}"
            + ("" if report["cached_manager"] else " (not cached)")
        )
        out.append(
            f"  policy: enabled={policy['enabled']} timeout={policy['timeout']} "
            f"user_scoped={policy['user_scoped']} stale_save={policy['stale_save']} "
            f"longevity={policy['longevity']}"
        )
        out.append(f"  tables (its reads depend on them): {', '.join(report['tables'])}")
        out.append(
            f"  models stored in these tables: {', '.join(report['models_in_these_tables'])}"
        )
        s = report["stats"]
        ratio = "-" if s["hit_ratio"] is None else f"{s['hit_ratio']:.1%}"
        out.append(
            f"  stats: {s['hits']} hits, {s['misses']} misses, {s['stores']} stores, "
            f"{s['invalidations']} invalidations, hit ratio {ratio}"
        )
        out.append("  A query also depends on every table it joins or reads in a subquery.")
    else:
        out.append(
            f"GET {report['url']} (Host: {report['host']}"
            + (f", user {report['user']})" if report["user"] else ")")
        )
        out.append(f"  status: {report['status']}")
        if report["page_cache"]:
            out.append(f"  page cache: {report['page_cache']}")
        if report["page_key"]:
            out.append(f"  page key: {report['page_key']}")
        if report["note"]:
            out.append(f"  note: {report['note']}")
        out.append(f"  reads: {len(report['reads'])}")
        for read in report["reads"]:
            outcome = read["outcome"] + (f" ({read['reason']})" if read["reason"] else "")
            deps = ", ".join(read["tables"]) if read["tables"] is not None else "unknown"
            out.append(
                f"    {read['model'] or '-':<24} {read['database']:<10} {outcome:<36} {deps}"
            )
        out.append("  dependencies:")
        for alias, deps in report["dependencies"].items():
            out.append(f"    {alias}: {', '.join(deps)}")
        if report["unknown_dependencies"]:
            out.append("    (some reads have unknown dependencies: such a page is not cached)")
    out.append("  versions:")
    for alias, found in report["versions"].items():
        out.append(f"    {alias}:")
        for key, token in found.items():
            out.append(f"      {key}  {token}")
    return "\n".join(out)


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
