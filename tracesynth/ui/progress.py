"""The one progress helper of every stage: a live bar on a terminal, plain lines otherwise.

    view = Progress("harvest", quiet=False)
    view.start(total=None)              # a rich bar when stderr is a terminal (and not quiet)
    view.update(done, total, "12.3/s $0.04")
    view.line("...")                    # a throttled status line (every ``every_s``; ``force`` for now)
    view.say("warning: ...")            # one line now, drawn above the bar
    view.stop()

rich is imported only when a bar may be drawn (~50 ms). With ``quiet`` there is no bar and status
lines go to stderr as plain text prefixed with the stage name, so logs stay line-oriented.
This module displays; it computes nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Progress of one stage on stderr (see the module docstring)."""

    def __init__(self, stage: str, *, quiet: bool = False, live: bool | None = None, every_s: float = 10.0) -> None:
        self.stage = stage
        self.quiet = quiet
        self.console: Any = None
        if not quiet and live is not False:
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False)
        self.live = (not quiet and self.console.is_terminal) if live is None else (live and not quiet)
        self.every_s = every_s
        self._next = 0.0
        self._last = ""
        self._bar: Any = None
        self._task: Any = None

    def say(self, message: str) -> None:
        """One line on stderr now (through rich when it is drawing, so the bar stays intact)."""
        if self.console is not None:
            self.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def line(self, text: str, *, force: bool = False) -> None:
        """A status line, at most every ``every_s`` seconds (and never the same twice in a row)."""
        now = time.monotonic()
        if self._bar is not None or text == self._last or (not force and now < self._next):
            return
        self._last, self._next = text, now + self.every_s
        self.say(f"{self.stage}: {text}" if self.quiet else text)

    def start(self, total: int | None = None) -> None:
        if not self.live or self._bar is not None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn(f"[bold]{self.stage}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            refresh_per_second=4,
            transient=False,
        )
        self._task = self._bar.add_task(self.stage, total=total, info="")
        self._bar.start()

    def update(self, done: int, total: int | None = None, info: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, info=info)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["Progress"]
