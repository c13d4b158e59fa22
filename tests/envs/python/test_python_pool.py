"""The pool of pre-started sandboxes: a new episode gets a started, unused sandbox; the pool refills;
pooled sandboxes are isolated per episode and closed without leftovers."""
from __future__ import annotations

from arpo_env.envs.python import pool
from arpo_env.envs.python.tiers import get_tier
from arpo_env.envs.python.tiers.common import uid_processes
from tests.helpers.waiting import wait_until


def test_pooled_sandboxes_serve_new_episodes_and_close_cleanly(make_tool, tier):
    tool = make_tool(pool_size=2)
    cfg, t = tool.config, get_tier(tier)
    assert tool("x = 1; x").text == "1"  # the first tool starts synchronously and fills the pool
    assert wait_until(lambda: pool.pooled_count(t, cfg) == 2)
    waiting = list(pool._pools[next(k for k in pool._pools if k[0] == tier)].ready)

    second = make_tool(pool_size=2)
    assert "NameError" in second("x").text  # a pooled sandbox holds no state of another episode
    assert second._tree in waiting and second._tree is not tool._tree
    assert wait_until(lambda: pool.pooled_count(t, cfg) == 2)  # refilled in the background

    idle = [tr for tr in pool._pools[next(k for k in pool._pools if k[0] == tier)].ready]
    uids = [tr.zygote.uid for tr in idle if tr.zygote.own_uid]
    pool.close_pools()
    assert all(not tr.alive for tr in idle) and pool.pooled_count(t, cfg) == 0
    assert wait_until(lambda: not any(uid_processes(u) for u in uids))
    assert tool("x + 1").text == "2"  # sessions in use are not touched by closing the pool


def test_no_pool_by_default(make_tool, tier):
    tool = make_tool()
    tool("1")
    assert tool.config.pool_size == 0 and pool.pooled_count(get_tier(tier), tool.config) == 0
