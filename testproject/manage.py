#!/usr/bin/env python3
"""Django's command-line utility for the demo blog.

Runs from any directory. The repository root replaces this script's own
directory on sys.path: `testproject` and `ormcache` then import from the
checkout, and `blog` cannot also be imported as a top-level package (which
would load the models twice).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent


def main() -> None:
    if sys.path and Path(sys.path[0]).resolve() == HERE:
        sys.path[0] = str(REPO_ROOT)
    else:
        sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
