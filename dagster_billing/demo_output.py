"""The demo's console: one line per stage with its counts and time, a progress bar for the
long ones, and everything else (Dagster events, dbt's node lines, library warnings) in a
log file. A failing stage stays loud: its error and the log's last lines reach the console.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster_billing.redact import redact

BAR_WIDTH = 24
TAIL_LINES = 15


class Stages:
    """Runs named stages; `log_path` None means a quiet caller (no console, no capture)."""

    def __init__(self, echo: Callable[[str], None], log_path: Path | None) -> None:
        self.echo = echo
        self.log_path = log_path
        self.total = 0.0
        self._console_fd: int | None = None

    def _write(self, text: str, newline: bool = True) -> None:
        if self._console_fd is None:
            self.echo(text)
            return
        os.write(self._console_fd, (text + ("\n" if newline else "")).encode())

    @contextmanager
    def _captured(self) -> Iterator[None]:
        """Point file descriptors 1 and 2 at the log: catches child processes and every
        logger that already holds sys.stderr, which redirecting sys.* would not."""
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        self._console_fd = saved[0]
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            self._console_fd = None

    def _progress(self, name: str, steps: int, started: float) -> Callable[[], None]:
        """A bar from the STEP_SUCCESS events the log receives; only on a terminal."""
        assert self.log_path is not None
        if not os.isatty(self._console_fd or 1):
            return lambda: None
        offset = self.log_path.stat().st_size
        stop = threading.Event()

        def draw() -> None:
            while not stop.wait(0.5):
                with self.log_path.open("rb") as handle:  # type: ignore[union-attr]
                    handle.seek(offset)
                    done = min(handle.read().count(b"STEP_SUCCESS"), steps)
                filled = BAR_WIDTH * done // max(steps, 1)
                bar = "#" * filled + "-" * (BAR_WIDTH - filled)
                elapsed = time.monotonic() - started
                self._write(f"\r{name} [{bar}] {done}/{steps} steps {elapsed:.0f} s", False)

        thread = threading.Thread(target=draw, daemon=True)
        thread.start()

        def finish() -> None:
            stop.set()
            thread.join()
            self._write("\r" + " " * (len(name) + BAR_WIDTH + 30) + "\r", False)

        return finish

    @contextmanager
    def stage(self, name: str, steps: int | None = None) -> Iterator[Callable[[str], None]]:
        """Yields `done(detail)`; prints `name: detail (seconds)` when the block ends."""
        detail = [""]
        started = time.monotonic()
        if self.log_path is None:
            yield lambda text: None
            return
        try:
            with self._captured():
                finish = self._progress(name, steps, started) if steps else (lambda: None)
                try:
                    yield lambda text: detail.__setitem__(0, text)
                finally:
                    finish()
        except BaseException as exc:
            elapsed = time.monotonic() - started
            self.echo(f"{name}: FAILED after {elapsed:.1f} s: {redact(exc)}")
            tail = self.log_path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
            for line in tail:
                self.echo(f"  | {redact(line)}")
            self.echo(f"full log: {self.log_path}")
            raise
        elapsed = time.monotonic() - started
        self.total += elapsed
        self.echo(f"{name}: {detail[0]} ({elapsed:.1f} s)")
