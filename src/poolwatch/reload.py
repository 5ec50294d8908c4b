"""Reloading ``serve``'s config file while it runs (SIGHUP, ``--watch-config``).

A reload compares the new file with the one applied last and applies only what differs
between the two: pools new to the file are created, settings the file changed are
changed live, pools gone from the file are removed (draining: queued and running tasks
finish). A setting changed over the API since then, and not changed in the file, stays
as it is; pools created over the API are never touched. A file that cannot be used
changes nothing and is reported with the message start-up would give. Each change is
one line in the audit log.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from poolwatch.config import Config, ConfigError, PoolConfig, load_config
from poolwatch.http.auth import audit_record

if TYPE_CHECKING:
    from poolwatch.manager import PoolManager

__all__ = ["LIVE_SETTINGS", "ConfigReloader"]

logger = logging.getLogger("poolwatch")

#: Pool settings a running pool can change (``ManagedPool.configure``).
LIVE_SETTINGS = (
    "max_workers",
    "queue_capacity",
    "rejection_policy",
    "queue_timeout",
    "run_timeout",
)
#: Pool keys that only a new pool applies, and how a reload says so.
_RECREATE_ONLY = {
    "history_size": "history_size applies",
    "kind": "kind applies",
    "kind_options": "the options of its kind apply",
}
#: Parts of the file that only a restart applies.
_RESTART_ONLY = ("server", "tracing", "shutdown", "tasks")


def _file_signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigReloader:
    """Applies a changed config file to a running manager. Thread-safe: reloads run one
    at a time."""

    def __init__(
        self,
        manager: PoolManager,
        config: Config,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        if config.source is None:
            raise ValueError("a config without a source file cannot be reloaded")
        self.manager = manager
        self.path = config.source
        self._env = env
        self._overrides = dict(overrides or {})
        self._applied = config
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._signature = _file_signature(self.path)

    @property
    def applied(self) -> Config:
        """The config applied last."""
        return self._applied

    def reload(self, reason: str = "reload") -> bool:
        """Read the file and apply what changed; False when the file cannot be used."""
        with self._lock:
            self._signature = _file_signature(self.path)
            try:
                new = load_config(self.path, env=self._env).with_overrides(**self._overrides)
            except ConfigError as exc:
                logger.error("config reload (%s) refused, nothing changed: %s", reason, exc)
                audit_record(self._record("config.reload", None, "refused", error=str(exc)))
                return False
            old = self._applied
            changes = self._apply(old, new)
            self._applied = new
        restart = [key for key in _RESTART_ONLY if getattr(old, key) != getattr(new, key)]
        if restart:
            logger.warning(
                "config reload: %s changed in %s; those take effect at the next restart",
                ", ".join(f"[{key}]" if key != "tasks" else "tasks" for key in restart),
                self.path,
            )
        logger.info(
            "config reloaded from %s (%s): %s",
            self.path,
            reason,
            "; ".join(changes) or "no changes",
        )
        return True

    def _record(
        self, action: str, target: str | None, result: str, **details: Any
    ) -> dict[str, Any]:
        return {
            "event": "config",
            "action": action,
            "target": target,
            "source": self.path,
            "result": result,
            **details,
        }

    def _apply(self, old: Config, new: Config) -> list[str]:
        before = {pool.name: pool for pool in old.pools}
        after = {pool.name: pool for pool in new.pools}
        existing = {pool.name for pool in self.manager.pools()}
        done: list[str] = []
        for name, wanted in after.items():
            if name not in existing:
                done.append(self._create(wanted))
            else:
                done.extend(self._update(wanted, before.get(name)))
        for name in before.keys() - after.keys():
            if name in existing:
                done.append(self._remove(name))
        return done

    def _create(self, pool: PoolConfig) -> str:
        settings = pool.create_kwargs()
        try:
            self.manager.create_pool(pool.name, **settings)
        except (ValueError, RuntimeError) as exc:  # created meanwhile, or shutting down
            audit_record(self._record("pool.create", pool.name, "failed", error=str(exc)))
            return f"could not create pool {pool.name}: {exc}"
        audit_record(self._record("pool.create", pool.name, "ok", settings=settings))
        return f"created pool {pool.name}"

    def _update(self, wanted: PoolConfig, before: PoolConfig | None) -> list[str]:
        """Change what the file changed; with no ``before`` (a pool the file adopts) all."""
        new = dataclasses.asdict(wanted)
        old = dataclasses.asdict(before) if before is not None else {}
        changes = {key: new[key] for key in LIVE_SETTINGS if key not in old or old[key] != new[key]}
        done: list[str] = []
        for key, what in _RECREATE_ONLY.items():
            if before is not None and old[key] != new[key]:
                done.append(f"pool {wanted.name}: {what} when the pool is re-created")
        if not changes:
            return done
        try:
            self.manager.get_pool(wanted.name).configure(**changes)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            audit_record(self._record("pool.update", wanted.name, "failed", error=str(exc)))
            return [*done, f"could not change pool {wanted.name}: {exc}"]
        audit_record(self._record("pool.update", wanted.name, "ok", changes=changes))
        shown = ", ".join(f"{key}={value}" for key, value in changes.items())
        return [f"changed pool {wanted.name} ({shown})", *done]

    def _remove(self, name: str) -> str:
        try:
            # Without waiting: the pool leaves the table now and drains on its own.
            self.manager.remove_pool(name, wait=False)
        except KeyError:
            return f"pool {name} was removed already"
        audit_record(self._record("pool.delete", name, "draining"))
        return f"removing pool {name} (draining)"

    # -- watching ---------------------------------------------------------------------

    def watch(self, interval: float = 1.0) -> None:
        """Reload whenever the file's modification time, size or inode changes, until
        :meth:`stop`. Blocks: run it in a thread."""
        while not self._stop.wait(interval):
            signature = _file_signature(self.path)
            if signature is not None and signature != self._signature:
                self.reload("file changed")

    def stop(self) -> None:
        self._stop.set()
