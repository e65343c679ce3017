"""The version matrix: `nox -l` lists the sessions, `nox -s tests` runs every pair.

Each ``tests`` session runs ``scripts/test`` for one (Python, Django) pair, exactly as CI
does: its virtualenv under .venvs/, throwaway PostgreSQL, Redis and Memcached servers,
ruff, mypy, the docs build, then pytest. nox itself creates no virtualenv for these
sessions (``venv_backend="none"``); it only names the pairs. ``matrix`` runs every pair
in one ``scripts/test`` (one set of servers, one summary).

Interpreters are found on PATH or in pyenv (``pyenv install 3.10 3.11 3.12 3.13``).
Arguments after ``--`` go to pytest: ``nox -s "tests(py313-dj61)" -- -x -k stats``.
"""

from __future__ import annotations

import glob
import os

import nox

# nox looks interpreters up on PATH: add pyenv's installs, newest patch release first.
for _bin in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin")), reverse=True):
    os.environ["PATH"] = os.environ["PATH"] + os.pathsep + _bin

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"

#: Django series -> the Python versions it supports (that this project tests).
SUPPORTED = {
    "4.2": ["3.10", "3.11", "3.12"],
    "5.2": ["3.10", "3.11", "3.12", "3.13"],
    "6.0": ["3.12", "3.13"],
    "6.1": ["3.12", "3.13"],
}
PAIRS = [(python, django) for django, pythons in SUPPORTED.items() for python in pythons]
#: What CI runs (.ci/run): the oldest and the newest pair.
CI_PAIRS = [PAIRS[0], PAIRS[-1]]


def matrix_name(python: str, django: str) -> str:
    """("3.10", "4.2") -> "py310-dj42", the names scripts/test understands."""
    return f"py{python.replace('.', '')}-dj{django.replace('.', '')}"


@nox.session(python=False, name="tests")
@nox.parametrize(
    "python,django",
    [nox.param(python, django, id=matrix_name(python, django)) for python, django in PAIRS],
)
def tests(session: nox.Session, python: str, django: str) -> None:
    """pytest (and the one-off checks) for one (Python, Django) pair."""
    session.run(
        "scripts/test",
        *session.posargs,
        env={"ORMCACHE_MATRIX": matrix_name(python, django)},
        external=True,
    )


@nox.session(python=False)
def matrix(session: nox.Session) -> None:
    """Every supported pair in one scripts/test run."""
    names = " ".join(matrix_name(python, django) for python, django in PAIRS)
    session.run("scripts/test", *session.posargs, env={"ORMCACHE_MATRIX": names}, external=True)


@nox.session(python=False)
def ci(session: nox.Session) -> None:
    """The pairs CI runs: the oldest and the newest."""
    names = " ".join(matrix_name(python, django) for python, django in CI_PAIRS)
    session.run("scripts/test", *session.posargs, env={"ORMCACHE_MATRIX": names}, external=True)


@nox.session(python="3.13", venv_backend="venv")
def docs(session: nox.Session) -> None:
    """The docs site, warnings as errors."""
    session.install("mkdocs>=1.6")
    session.run("mkdocs", "build", "--strict", "--site-dir", session.create_tmp() + "/site")


@nox.session(python="3.13", venv_backend="venv")
def mypy(session: nox.Session) -> None:
    """mypy with django-stubs over ormcache/."""
    session.install("-e", ".[test]")
    session.run("mypy")


@nox.session(python="3.13", venv_backend="venv")
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel; install each in a fresh venv and smoke-test it."""
    session.install("build")
    session.run("scripts/check-package", "python", external=True)
