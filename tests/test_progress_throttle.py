"""Progress output that goes to a file: at most one whole, timestamped line
per interval of an (injected) clock, a last line on close, tqdm only on a
terminal, the interval from the environment."""
import io
import re

import pytest

from csc_analyzers.experiments.progress import (INTERVAL_ENV, LineProgress, progress_bar,
                                                progress_interval)

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] sanity: (\d+)/1000 units \(\d+%\), elapsed \d\d:\d\d")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_non_terminal_output_is_throttled_to_one_line_per_interval():
    clock, stream = FakeClock(), io.StringIO()
    bar = LineProgress(1000, "sanity", stream=stream, interval=10.0, clock=clock)
    for _ in range(1000):  # 1000 updates, 0.1 s apart: 100 s in all
        clock.now += 0.1
        bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # first update, then one per 10 s of the 100 s, then the closing line at most
    assert 10 <= len(lines) <= 12, lines
    assert all(LINE.match(line) for line in lines), lines
    assert [int(LINE.match(line).group(1)) for line in lines][-1] == 1000
    counts = [int(LINE.match(line).group(1)) for line in lines]
    assert all(b - a >= 99 for a, b in zip(counts[1:-1], counts[2:-1])), counts
    assert "elapsed 01:40" in lines[-1]


def test_a_burst_within_one_interval_writes_the_first_and_the_last_line_only():
    clock, stream = FakeClock(), io.StringIO()
    with LineProgress(5, "csc", stream=stream, interval=10.0, clock=clock) as bar:
        for _ in range(5):
            clock.now += 1.0
            bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "1/5 units" in lines[0] and "left 00:04" in lines[0]
    assert "5/5 units (100%)" in lines[1]
    # closing twice writes nothing more
    bar.close()
    assert len(stream.getvalue().splitlines()) == 2


def test_interval_zero_writes_every_update_and_the_env_sets_the_default(monkeypatch):
    clock, stream = FakeClock(), io.StringIO()
    bar = LineProgress(3, "x", stream=stream, interval=0, clock=clock)
    for _ in range(3):
        bar.update()
    bar.close()
    assert len(stream.getvalue().splitlines()) == 3
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert progress_interval() == 2.5
    assert LineProgress(1, stream=io.StringIO()).interval == 2.5
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match=INTERVAL_ENV):
        progress_interval()
    monkeypatch.delenv(INTERVAL_ENV)
    assert progress_interval() == 10.0
    with pytest.raises(ValueError, match="interval"):
        progress_interval(-1)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_is_tqdm_on_a_terminal_and_lines_elsewhere():
    from tqdm import tqdm
    bar = progress_bar(3, "t", stream=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(progress_bar(3, "t", stream=io.StringIO()), LineProgress)
    disabled = progress_bar(3, "t", disable=True, stream=io.StringIO())
    disabled.update(2)
    assert not isinstance(disabled, (tqdm, LineProgress)) and disabled.n == 2


def test_postfix_and_messages_keep_whole_stamped_lines():
    clock, stream = FakeClock(), io.StringIO()
    bar = LineProgress(4, "train", stream=stream, interval=10.0, clock=clock, unit="batch")
    bar.set_postfix(loss="0.500")
    bar.update()
    bar.write("epoch 1: test accuracy 0.5000")
    clock.now += 11
    bar.update(3)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert all(re.match(r"^\[\d\d:\d\d:\d\d\] ", line) for line in lines)
    assert lines[0].endswith("1/4 batches (25%), elapsed 00:00, left 00:00, loss=0.500")
    assert lines[1].endswith("] epoch 1: test accuracy 0.5000")
    assert "4/4 batches (100%), elapsed 00:11, loss=0.500" in lines[2]
