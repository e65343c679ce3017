# TEMPORARY smoke test for scripts/test; delete before committing.
import os
import socket

import psycopg
import pytest
import redis


def test_redis():
    r = redis.Redis.from_url(os.environ["ORMCACHE_TEST_REDIS_URL"])
    assert r.ping()
    r.set("k", "v")
    assert r.get("k") == b"v"


def test_postgres():
    with psycopg.connect(
        host=os.environ["ORMCACHE_TEST_PG_HOST"],
        port=os.environ["ORMCACHE_TEST_PG_PORT"],
        user=os.environ["ORMCACHE_TEST_PG_USER"],
        dbname="postgres",
    ) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("show fsync").fetchone() == ("off",)


def test_memcached():
    host, port = os.environ["ORMCACHE_TEST_MEMCACHED"].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"version\r\n")
        assert s.recv(100).startswith(b"VERSION")


@pytest.mark.skipif(not os.environ.get("SMOKE_FAIL"), reason="only when SMOKE_FAIL set")
def test_fail_on_demand():
    raise AssertionError("requested failure")


@pytest.mark.skipif(not os.environ.get("SMOKE_SLEEP"), reason="only when SMOKE_SLEEP set")
def test_sleep():
    import time

    time.sleep(float(os.environ["SMOKE_SLEEP"]))
