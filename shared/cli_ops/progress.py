"""Terminal output: tqdm bars on a TTY, sparse status lines elsewhere, results on stdout."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from tqdm import tqdm

# Without a terminal (CI logs, cron mail), one status line this often says the job is alive.
STATUS_LINE_SECONDS = 30.0


def bars_wanted(mode: str) -> bool:
    """`auto` shows bars only when stderr is a terminal; `always` and `never` force it."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def result(text: str) -> None:
    """A line of the command's result (operation names, summaries, listings): stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A message for the operator on stderr that does not tear a bar drawn there."""
    tqdm.write(text, file=sys.stderr)


class Meter:
    """One progress bar, or periodic plain status lines when bars are off; thread-safe."""

    def __init__(self, enabled: bool, label: str, **bar_options: Any) -> None:
        self.enabled = enabled
        self.label = label
        self.lock = threading.Lock()
        self.bar = tqdm(
            desc=label,
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
            **bar_options,
        )
        self.last_line = time.monotonic()

    def advance(self, amount: float) -> None:
        with self.lock:
            self.bar.update(amount)

    def show(self, done: float, total: float | None, status: str) -> None:
        """Set absolute progress; a status line now and then when no bar is drawn."""
        with self.lock:
            if self.enabled:
                if total is not None and self.bar.total != total:
                    self.bar.total = total
                self.bar.n = done
                self.bar.set_postfix_str(status, refresh=False)
                self.bar.refresh()
                return
        self.maybe_line(status)

    def maybe_line(self, status: str) -> None:
        now = time.monotonic()
        if not self.enabled and now - self.last_line >= STATUS_LINE_SECONDS:
            self.last_line = now
            note(f"{self.label}: {status}")

    def postfix(self, status: str) -> None:
        with self.lock:
            self.bar.set_postfix_str(status)

    def close(self) -> None:
        with self.lock:
            self.bar.close()
