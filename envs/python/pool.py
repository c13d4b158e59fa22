"""A process-wide pool of pre-started sandboxes (``SandboxConfig.pool_size``).

Starting a sandbox (a zygote in fresh namespaces, a bwrap jail or a container) costs 0.05-0.3 s, paid
once per episode env. With a pool, :func:`take_tree` hands out an already started, never used sandbox
for the same (tier, configuration) and starts a replacement in a background thread. Pooled sandboxes are
idle zygotes: no session, no user code has run in them, so handing one to an episode leaks nothing. They
die with this process (their control channel closes) and :func:`close_pools` (run at exit) closes them.

Not covered: sharing a pool between processes; shrinking a pool whose configuration is no longer used
(it holds ``pool_size`` idle sandboxes until exit).
"""
from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict

from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.protocol import Tier
from arpo_env.envs.python.session import Tree

log = logging.getLogger(__name__)


class _Pool:
    """Ready sandboxes for one (tier, configuration), started by one long-lived thread.

    The thread never exits before the process: tiers tie a sandbox's life to the thread that started it
    (``PR_SET_PDEATHSIG``), so a short-lived starter thread would kill its sandboxes as it ends, and
    ending this one would kill sandboxes already handed to episodes."""

    def __init__(self, tier: Tier, config: SandboxConfig):
        self.tier, self.config = tier, config
        self.ready: deque[Tree] = deque()
        self.closed = False
        self.lock = threading.Lock()
        self.wakeup = threading.Condition(self.lock)
        self.thread = threading.Thread(target=self._run, name=f"arpo-sandbox-pool-{tier.name}", daemon=True)
        self.thread.start()

    def take(self) -> Tree | None:
        """A started, unused sandbox, or ``None`` when none is ready yet; wakes the starter either way."""
        with self.lock:
            tree = None
            while self.ready and tree is None:
                candidate = self.ready.popleft()
                tree = candidate if candidate.alive else None
            self.wakeup.notify()
        return tree

    def _run(self) -> None:
        failures = 0
        while True:
            with self.lock:
                while self.closed or len(self.ready) >= self.config.pool_size:
                    self.wakeup.wait()
            tree = None
            try:
                tree = Tree(self.tier, self.config)
                failures = 0
            except Exception as exc:  # the caller's synchronous start reports the real error
                failures += 1
                log.warning("could not pre-start a %s sandbox: %s", self.tier.name, exc)
            with self.lock:
                if tree is not None and not self.closed:
                    self.ready.append(tree)
                    tree = None
            if tree is not None:
                tree.close()
            if failures:
                time.sleep(min(30.0, 0.5 * 2 ** failures))  # do not spin on a broken tier

    def close(self) -> None:
        """Close the idle sandboxes and stop refilling (sandboxes already handed out live on)."""
        with self.lock:
            self.closed = True
            trees, self.ready = list(self.ready), deque()
        for tree in trees:
            tree.close()


_pools: dict[tuple[str, str], _Pool] = {}
_pools_lock = threading.Lock()


def take_tree(tier: Tier, config: SandboxConfig) -> Tree:
    """A sandbox for a new episode: a pooled one when ready (``pool_size`` > 0), else started now."""
    if config.pool_size <= 0:
        return Tree(tier, config)
    key = (tier.name, json.dumps(asdict(config), sort_keys=True, default=str))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = _pools[key] = _Pool(tier, config)
    tree = pool.take()
    return tree if tree is not None else Tree(tier, config)


def pooled_count(tier: Tier, config: SandboxConfig) -> int:
    """How many started sandboxes wait in the pool for this (tier, configuration)."""
    key = (tier.name, json.dumps(asdict(config), sort_keys=True, default=str))
    pool = _pools.get(key)
    return len(pool.ready) if pool is not None else 0


def close_pools() -> None:
    """Close every idle pooled sandbox (runs at interpreter exit)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


atexit.register(close_pools)
