"""Copy and drop PostgreSQL databases for run.py: every run gets its own copy of the
seeded data set (``CREATE DATABASE ... TEMPLATE``, a file-level copy: seconds, not a
re-seed).

    python -m suite.pgadmin create NAME [--template TEMPLATE]
    python -m suite.pgadmin drop NAME

Connects to the ``postgres`` database with BENCH_PG_HOST/PORT/USER.
"""

import argparse
import os

import psycopg
from psycopg import sql


def connect() -> psycopg.Connection:
    return psycopg.connect(
        host=os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
        port=os.environ.get("BENCH_PG_PORT", "5432"),
        user=os.environ.get("BENCH_PG_USER", "postgres"),
        dbname="postgres",
        autocommit=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["create", "drop"])
    parser.add_argument("name")
    parser.add_argument("--template")
    args = parser.parse_args()
    with connect() as connection:
        name = sql.Identifier(args.name)
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if args.action == "create":
            statement = sql.SQL("CREATE DATABASE {}").format(name)
            if args.template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(args.template))
            connection.execute(statement)


if __name__ == "__main__":
    main()
