"""Both caches keep one contract: the in-process one (standalone) and Redis (here fakeredis)."""

from __future__ import annotations

import threading
import time

import fakeredis
import pytest

from app.agents.cache import Cache, LocalCache, RedisCache, SessionBusy, make_cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "redis"])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "local":
        return LocalCache()
    # The real Redis (database 3): its locks are Lua scripts, which fakeredis does not run.
    return RedisCache(request.getfixturevalue("cache_redis"))


def test_values_are_read_back_and_deleted(cache: Cache) -> None:
    cache.set("k", "v", 60)
    assert cache.get("k") == "v"
    cache.delete("k")
    assert cache.get("k") is None


def test_a_list_is_replaced_whole_and_missing_reads_empty(cache: Cache) -> None:
    assert cache.read_list("l") == []
    cache.replace_list("l", ["a", "b"], 60)
    cache.replace_list("l", ["c"], 60)
    assert cache.read_list("l") == ["c"]
    cache.replace_list("l", [], 60)
    assert cache.read_list("l") == []


def test_delete_prefix_removes_only_matching_keys(cache: Cache) -> None:
    cache.replace_list("dualmcp:memory:a:s1", ["x"], 60)
    cache.replace_list("dualmcp:memory:a:s2", ["x"], 60)
    cache.replace_list("dualmcp:memory:ab:s1", ["x"], 60)

    cache.delete_prefix("dualmcp:memory:a:")

    assert cache.read_list("dualmcp:memory:a:s1") == []
    assert cache.read_list("dualmcp:memory:a:s2") == []
    assert cache.read_list("dualmcp:memory:ab:s1") == ["x"]


def test_a_held_lock_makes_the_second_taker_wait_then_give_up(cache: Cache) -> None:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with cache.lock("lock:s", ttl_s=10, wait_s=1):
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    started = time.monotonic()
    with pytest.raises(SessionBusy), cache.lock("lock:s", ttl_s=10, wait_s=0.2):
        pass
    assert time.monotonic() - started >= 0.05  # it waited (Redis locks poll every 0.1 s)
    release.set()
    holder.join()
    with cache.lock("lock:s", ttl_s=10, wait_s=0.2):
        pass  # free again


def test_local_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache = LocalCache(clock=clock)
    cache.set("k", "v", 10)
    cache.replace_list("l", ["a"], 10)

    clock.now += 11

    assert cache.get("k") is None
    assert cache.read_list("l") == []


def test_redis_lists_carry_a_ttl() -> None:
    client = fakeredis.FakeRedis()
    RedisCache(client).replace_list("l", ["a"], 30)

    assert 0 < client.ttl("l") <= 30


def test_memory_url_is_the_one_in_process_cache() -> None:
    assert make_cache("memory://") is make_cache("memory://")
    assert isinstance(make_cache("redis://127.0.0.1:1/0"), RedisCache)
