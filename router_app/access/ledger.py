"""The ledger writer: one thread that commits usage rows to the store in groups, writes audit lines, and polls
for key changes made by other processes (the CLI)."""
from __future__ import annotations

import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .store import Store, UsageRow, connect


@dataclass
class _Item:
    row: Optional[UsageRow]
    audit: Optional[bytes]
    done: Optional[Callable[[], None]] = None
    loop: Any = None          # an asyncio loop and a future on it, resolved after the commit
    fut: Any = None


def _resolve_all(futs: list) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)


class LedgerWriter:
    """One thread owns all ledger writes.

    Requests hand over a :class:`UsageRow` (plus an optional audit line) and
    an optional ``done`` callback. The thread drains whatever has queued up,
    inserts it in ONE transaction, commits, appends the audit lines, and only
    then runs the callbacks (the router uses them to release the client's
    response). Under load many requests share one commit; at one connection a
    commit costs tens of microseconds (WAL, synchronous=NORMAL, no fsync).

    WAL checkpoints (the only step that fsyncs) are taken off the request
    path: automatic checkpoints are off on the writing connection and the
    thread runs a PASSIVE checkpoint on its own connection about once per
    ``checkpoint_s`` while rows are being written.

    The thread also watches ``PRAGMA data_version`` and calls
    ``on_external_change`` when another process (the CLI) committed, so
    created/revoked/rotated keys take effect within ``poll_s``.
    """

    def __init__(self, store: Store, *, audit_sink: Optional[Callable[[list[bytes]], None]] = None,
                 on_external_change: Optional[Callable[[], None]] = None,
                 poll_s: float = 0.5, max_batch: int = 2048, checkpoint_s: float = 1.0,
                 keep_days: Optional[int] = None, prune_every_s: float = 3600.0,
                 clock: Callable[[], float] = time.time,
                 on_error: Optional[Callable[[BaseException], None]] = None):
        self.store = store
        self.audit_sink = audit_sink
        self.on_external_change = on_external_change
        self.poll_s = poll_s
        self.max_batch = max_batch
        self.on_error = on_error
        self._q: "queue.SimpleQueue[Optional[_Item]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._stopped = threading.Event()
        self._dv = store.data_version()
        self.commits = 0
        self.checkpoints = 0
        self.rows_written = 0
        self.errors = 0
        self._busy = False
        self.inline_commits = 0
        self.checkpoint_s = checkpoint_s
        self.keep_days = keep_days
        self.prune_every_s = prune_every_s
        self._clock = clock
        self.pruned = 0
        self._ckpt_rows = 0
        with store._lock:
            store.conn.execute("PRAGMA wal_autocheckpoint=0")

    def start(self) -> "LedgerWriter":
        self._thread.start()
        return self

    def submit(self, row: Optional[UsageRow], audit: Optional[bytes] = None,
               done: Optional[Callable[[], None]] = None, loop: Any = None, fut: Any = None) -> None:
        self._q.put(_Item(row, audit, done, loop, fut))

    def try_inline(self, row: UsageRow, audit: Optional[bytes]) -> bool:
        """Commit one row on the caller's thread when nothing else is pending
        (the writer idle, its queue empty, the connection free); False
        otherwise. A single sequential client then pays one local commit
        (tens of microseconds) instead of two thread wake-ups; under
        concurrency rows go to the writer and share commits."""
        if self._busy or not self._q.empty() or not self._thread.is_alive():
            return False
        if not self.store._lock.acquire(blocking=False):
            return False
        try:
            if self._busy:
                return False
            self.rows_written += self.store.insert_usage([row])
            self.commits += 1
            self.inline_commits += 1
        except sqlite3.Error:
            return False
        finally:
            self.store._lock.release()
        if audit is not None and self.audit_sink is not None:
            try:
                self.audit_sink([audit])
            except Exception as e:
                self.errors += 1
                if self.on_error:
                    self.on_error(e)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout)
        self._stopped.set()

    def _checkpoint(self, conn: sqlite3.Connection, mode: str = "PASSIVE") -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as e:
            self.errors += 1
            if self.on_error:
                self.on_error(e)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            # never leave an answer waiting on a dead thread
            while True:
                try:
                    it = self._q.get_nowait()
                except queue.Empty:
                    break
                if it is not None:
                    self._flush([it])

    def _loop(self) -> None:
        stop = False
        last_poll = last_ckpt = time.monotonic()
        last_prune = last_poll - self.prune_every_s   # once at start, then every prune_every_s
        ckpt_conn = connect(self.store.path)   # its own connection: a checkpoint never holds the writers' lock
        while not stop:
            try:
                first = self._q.get(timeout=self.poll_s)
            except queue.Empty:
                first = False  # type: ignore[assignment]
            batch: list[_Item] = []
            if first is None:
                stop = True
            elif first is not False:
                batch.append(first)
                while len(batch) < self.max_batch:
                    try:
                        nxt = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
            if batch:
                self._busy = True
                try:
                    self._flush(batch)
                finally:
                    self._busy = False
            now = time.monotonic()
            if now - last_poll >= self.poll_s or first is False:
                last_poll = now
                self._poll()
            if self.keep_days and now - last_prune >= self.prune_every_s:
                last_prune = now
                try:
                    self.pruned += self.store.prune(self._clock() - self.keep_days * 86400.0)
                except Exception as e:
                    self.errors += 1
                    if self.on_error:
                        self.on_error(e)
            if now - last_ckpt >= self.checkpoint_s:
                last_ckpt = now
                if self.rows_written != self._ckpt_rows:
                    self._ckpt_rows = self.rows_written
                    self._checkpoint(ckpt_conn)
        self._checkpoint(ckpt_conn, "TRUNCATE")
        ckpt_conn.close()

    def _flush(self, batch: list[_Item]) -> None:
        rows = [it.row for it in batch if it.row is not None]
        for attempt in range(5):
            try:
                n = self.store.insert_usage(rows)
                self.rows_written += n
                self.commits += 1
                break
            except Exception as e:  # busy beyond busy_timeout, disk full, a bad row...
                self.errors += 1
                if self.on_error:
                    self.on_error(e)
                time.sleep(0.05 * (attempt + 1))
        # rows are committed: release the waiting answers first, one loop wake-up per batch
        by_loop: dict = {}
        for it in batch:
            if it.fut is not None:
                by_loop.setdefault(it.loop, []).append(it.fut)
            if it.done is not None:
                try:
                    it.done()
                except Exception:
                    pass
        for loop, futs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, futs)
            except RuntimeError:  # loop closed at shutdown
                pass
        audits = [it.audit for it in batch if it.audit is not None]
        if audits and self.audit_sink is not None:
            try:
                self.audit_sink(audits)
            except Exception as e:  # audit trouble never blocks accounting
                self.errors += 1
                if self.on_error:
                    self.on_error(e)

    def _poll(self) -> None:
        try:
            dv = self.store.data_version()
        except sqlite3.Error:
            return
        if dv != self._dv:
            self._dv = dv
            if self.on_external_change:
                try:
                    self.on_external_change()
                except Exception as e:
                    self.errors += 1
                    if self.on_error:
                        self.on_error(e)
