"""Progress bars that stay readable in a log file.

On a terminal :func:`progress_bar` is a tqdm bar (redrawn in place). When
the stream is not a terminal (output redirected to a file, a batch job, a
Ray worker's log), carriage-return redraws would pile up thousands of
updates in the log; there :class:`LineProgress` writes one whole line, with
a timestamp, at most every ``interval`` seconds, and a last line when the
bar closes. The interval is :data:`DEFAULT_INTERVAL` seconds unless given,
or set for a whole run with the environment variable
``CSC_PROGRESS_INTERVAL`` (seconds).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional, TextIO

DEFAULT_INTERVAL = 10.0
INTERVAL_ENV = "CSC_PROGRESS_INTERVAL"


def progress_interval(interval: Optional[float] = None) -> float:
    """``interval`` if given, else ``$CSC_PROGRESS_INTERVAL``, else
    :data:`DEFAULT_INTERVAL` (seconds); ValueError for a negative or
    non-numeric value, naming where it came from."""
    source = "interval"
    if interval is None:
        text = os.environ.get(INTERVAL_ENV)
        if text is None or text.strip() == "":
            return DEFAULT_INTERVAL
        source = f"${INTERVAL_ENV}"
        try:
            interval = float(text)
        except ValueError:
            raise ValueError(f"{source}={text!r}: expected a number of seconds") from None
    interval = float(interval)
    if not interval >= 0:
        raise ValueError(f"{source}={interval!r}: expected a number of seconds >= 0")
    return interval


def timestamp(clock_time: Optional[float] = None) -> str:
    """``[HH:MM:SS]`` of the wall-clock time ``clock_time`` (default now)."""
    return time.strftime("[%H:%M:%S]", time.localtime(clock_time))


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def _duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60:02d}:{rest % 60:02d}"


class LineProgress:
    """A progress bar for a stream that is not a terminal: whole lines
    ``[HH:MM:SS] desc: n/total units (p%), elapsed mm:ss, left mm:ss``,
    at most one per ``interval`` seconds of ``clock`` (a monotonic time
    function, injectable for tests), the first one at the first update and
    a last one on :meth:`close` (if anything changed since the last line).
    ``wall`` gives the time printed in the stamp."""

    def __init__(self, total: Optional[int], desc: str = "", *, stream: TextIO = None,
                 interval: Optional[float] = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, unit: str = "unit"):
        self.total = None if total is None else int(total)
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.interval = progress_interval(interval)
        self.clock, self.wall, self.unit = clock, wall, unit
        self.n = 0
        self.started = clock()
        self._last_line: Optional[float] = None
        self._written_n: Optional[int] = None
        self.closed = False
        self.postfix = ""

    def _line(self) -> str:
        elapsed = self.clock() - self.started
        head = f"{timestamp(self.wall())} {self.desc}: " if self.desc else \
            f"{timestamp(self.wall())} "
        if self.total:
            share = 100.0 * self.n / self.total
            text = f"{head}{self.n}/{self.total} {_plural(self.unit)} ({share:.0f}%), " \
                   f"elapsed {_duration(elapsed)}"
            if 0 < self.n < self.total:
                text += f", left {_duration(elapsed * (self.total - self.n) / self.n)}"
        else:
            text = f"{head}{self.n} {_plural(self.unit)}, elapsed {_duration(elapsed)}"
        return f"{text}, {self.postfix}" if self.postfix else text

    def _write(self) -> None:
        self.stream.write(self._line() + "\n")
        self.stream.flush()
        self._last_line = self.clock()
        self._written_n = self.n

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self._last_line is None or self.clock() - self._last_line >= self.interval:
            self._write()

    def set_postfix(self, **values) -> None:
        """Values shown at the end of the next lines (``key=value``), as tqdm's."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def write(self, text: str) -> None:
        """A message line of its own (stamped), as ``tqdm.write``."""
        self.stream.write(f"{timestamp(self.wall())} {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._written_n != self.n:
            self._write()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class _Disabled:
    """The progress bar of a run without progress output."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += int(n)

    def set_postfix(self, **values) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(total: Optional[int], desc: str = "", *, disable: bool = False,
                 stream: TextIO = None, interval: Optional[float] = None, unit: str = "unit"):
    """A progress bar with ``update(n)``, ``close()`` and the context-manager
    protocol: tqdm on a terminal, :class:`LineProgress` (one timestamped
    line per ``interval`` seconds at most) otherwise, nothing if ``disable``."""
    if disable:
        return _Disabled()
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=stream)
    return LineProgress(total, desc, stream=stream, interval=interval, unit=unit)


__all__ = ["progress_bar", "LineProgress", "progress_interval", "timestamp",
           "DEFAULT_INTERVAL", "INTERVAL_ENV"]
