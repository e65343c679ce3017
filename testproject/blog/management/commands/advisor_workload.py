"""``manage.py advisor_workload``: run the policy advisor's scripted workload, then advise.

Runs ``testproject.blog.advisor_workload`` (a read-mostly, a volatile and a rarely
read model) with stats on, and prints what ``manage.py ormcache advise`` prints for it.
"""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ormcache import advisor, stats
from testproject.blog import advisor_workload


class Command(BaseCommand):
    help = "Run a scripted workload (read-mostly, volatile, rarely read) and print the advice."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=("table", "json"), default="table")
        parser.add_argument(
            "--keep", action="store_true", help="keep the workload's rows (advisor-*)"
        )
        parser.add_argument("--database", help="database alias (default: the router's)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not stats.is_enabled():
            raise CommandError("Stats are off: set ORMCACHE['STATS'] = {'enabled': True}.")
        advice = advisor_workload.run(using=options["database"], keep=options["keep"])
        if options["format"] == "json":
            self.stdout.write(json.dumps([item.as_dict() for item in advice], indent=2))
        else:
            self.stdout.write(advisor.table(advice))
