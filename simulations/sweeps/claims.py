"""Task claims: concurrent sweeps on one store share the work instead of repeating it.

Before a sweep submits a task it claims the task's record: a claim is a small JSON file
``<kind>/.<record name>.claim`` holding the owner (``pid``, ``host``, a per-run ``run`` id and
the start time), created atomically and exclusively (written to a temporary file, then
``os.link``-ed to the claim name, which fails if the claim exists: the NFS-safe form of
``O_CREAT | O_EXCL``, so a claim is never seen half-written). Exactly one run gets each claim; a
run that finds a task claimed by a live run skips it and, once its own tasks are done, waits
for it (:func:`simulations.sweeps.runner.run_sweep`), so two sweeps on one store compute every
task once between them.

A claim is **stale**, and is taken over, when

* its owner ran on this host and its process no longer exists (a sweep killed by ``kill -9``,
  a crashed machine that came back), or it is a finished run of this very process; or
* its heartbeat is older than :data:`STALE_AFTER_S` (owners on other hosts, whose processes
  cannot be checked, and recycled pids): a live owner refreshes the modification time of every
  claim it holds every :data:`HEARTBEAT_S` seconds from a background thread.

A takeover happens under an exclusive ``flock`` on ``<store>/.claims.lock`` and re-reads the
claim there, so two runs never both take over one stale claim. Claims are released (deleted) by
their owner when the task's future completes and, whatever happens, when the run ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from simulations.jsonio import file_mode

__all__ = ["Claims", "claim_path", "STALE_AFTER_S", "HEARTBEAT_S"]

#: a claim whose heartbeat is older than this (seconds) is stale (env HDLORA_CLAIM_STALE_S)
STALE_AFTER_S = float(os.environ.get("HDLORA_CLAIM_STALE_S", 600))
#: how often a live run refreshes the claims it holds
HEARTBEAT_S = max(1.0, STALE_AFTER_S / 10)

_LIVE_RUNS: set[str] = set()      # run ids of the Claims objects open in this process


def claim_path(record: Path) -> Path:
    """The claim file of a record path."""
    return record.with_name(f".{record.stem}.claim")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


class Claims:
    """The claims of one sweep run on one store (see the module docstring). Use as a context
    manager: on exit the heartbeat stops and every claim still held is released."""

    def __init__(self, store_root: str | Path):
        self.root = Path(store_root)
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(),
                      "run": uuid.uuid4().hex, "started": time.strftime(
                          "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._held: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "Claims":
        _LIVE_RUNS.add(self.owner["run"])
        self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                        name="hdlora-claims-heartbeat")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.release_all()
        _LIVE_RUNS.discard(self.owner["run"])

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                held = list(self._held)
            for path in held:
                with contextlib.suppress(OSError):
                    os.utime(path)

    # -- claims ----------------------------------------------------------------------------
    def claim(self, record: Path) -> dict | None:
        """Claim the task of ``record``: None when this run now holds it, else the owner of the
        live claim that keeps it (a dict with pid, host, run, started)."""
        path = claim_path(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create(path):
                with self._lock:
                    self._held.add(path)
                return None
            owner = self._read(path)
            if owner is not None and not self._stale(path, owner):
                return owner
            self._take_over(path)
        return self._read(path) or {"pid": None, "host": "?", "run": "?", "started": "?"}

    def release(self, record: Path) -> None:
        """Delete the claim of ``record`` if this run holds it."""
        path = claim_path(record)
        with self._lock:
            held = path in self._held
            self._held.discard(path)
        if held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def release_all(self) -> None:
        with self._lock:
            held, self._held = list(self._held), set()
        for path in held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def tidy(self, record: Path) -> None:
        """Delete a stale claim left beside a finished record (a run killed between writing
        the record and releasing its claim)."""
        path = claim_path(record)
        if path.exists():
            owner = self._read(path)
            if owner is not None and self._stale(path, owner):
                self._take_over(path)

    def holder(self, record: Path) -> dict | None:
        """The owner of a live claim on ``record`` held by another run (None: unclaimed or
        stale, i.e. free to be taken)."""
        path = claim_path(record)
        owner = self._read(path)
        if owner is None or owner.get("run") == self.owner["run"] or self._stale(path, owner):
            return None
        return owner

    # -- internals -------------------------------------------------------------------------
    def _create(self, path: Path) -> bool:
        tmp = path.with_name(f"{path.name}.{self.owner['run']}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode())
        with os.fdopen(fd, "w") as fh:
            json.dump(self.owner, fh)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:          # a file system without hard links: exclusive create instead
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode())
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                json.dump(self.owner, fh)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            owner = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": None, "host": None, "run": None, "started": None}
        return owner if isinstance(owner, dict) else {"pid": None, "host": None, "run": None}

    def _stale(self, path: Path, owner: dict) -> bool:
        if owner.get("run") == self.owner["run"]:
            return False
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        if age > STALE_AFTER_S:
            return True
        if owner.get("host") == self.owner["host"] and isinstance(owner.get("pid"), int):
            if owner["pid"] == os.getpid():
                return owner.get("run") not in _LIVE_RUNS
            return not _alive(owner["pid"])
        return False

    def _take_over(self, path: Path) -> None:
        """Delete a stale claim, re-checked under the store's claim lock."""
        lock = self.root / ".claims.lock"
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            owner = self._read(path)
            if owner is not None and self._stale(path, owner):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
