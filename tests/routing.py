"""Sends every query of a test to the database of its backend pair."""

import contextvars

from django.db import DEFAULT_DB_ALIAS

current_alias: contextvars.ContextVar[str] = contextvars.ContextVar(
    "test_db_alias", default=DEFAULT_DB_ALIAS
)


class BackendRouter:
    def db_for_read(self, model, **hints):
        return current_alias.get()

    def db_for_write(self, model, **hints):
        return current_alias.get()

    def allow_relation(self, obj1, obj2, **hints):
        return True

    def allow_migrate(self, db, app_label, **hints):
        return True
