"""ProgressDisplay: plain lines off a terminal (rate-limited, final line), rich on a terminal."""

from __future__ import annotations

import io
import re

import pytest

import cosearch.progress as progress_mod
from cosearch.progress import ProgressDisplay


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(progress_mod, "_now", c)
    return c


class TTYStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_rate_limited_and_final_line(clock):
    out = io.StringIO()
    with ProgressDisplay("search", total=40, stream=out, plain_every_s=10.0) as p:
        clock.t += 1.0
        p.update(10, proposed=12, evaluated=10)  # first update: printed at once
        clock.t += 3.0
        p.update(11, evaluated=11)  # within 10 s: not printed
        clock.t += 3.0
        p.update(12, stopped=2)  # still within 10 s
        clock.t += 5.0
        p.update(13, hv=0.61)  # 11 s after the first line: printed
        clock.t += 1.0
    lines = out.getvalue().splitlines()
    assert lines == [
        "[   1.0s] search: 10/40 proposed=12 evaluated=10",
        "[  12.0s] search: 13/40 proposed=12 evaluated=11 stopped=2 hv=0.61",
        "[  13.0s] search: 13/40 proposed=12 evaluated=11 stopped=2 hv=0.61 (done)",
    ]


def test_plain_unit_log_and_exception_suffix(clock):
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with ProgressDisplay("tune", total=512, unit="trials", stream=out) as p:
            p.update(128.0, tasks="3/7")
            clock.t += 2.5
            p.log("task conv2d_1 stopped early")
            raise RuntimeError("boom")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[   0.0s] tune: 128/512 trials tasks=3/7"
    assert lines[1] == "[   2.5s] task conv2d_1 stopped early"
    assert lines[2].endswith("(stopped by RuntimeError)") and "128/512 trials" in lines[2]


def test_total_none_shows_fields_and_elapsed_only(clock):
    out = io.StringIO()
    with ProgressDisplay("search", stream=out, plain_every_s=0) as p:
        p.update(front=4)
        clock.t += 0.5
        p.update(5, unit_less=True)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[   0.0s] search: front=4"
    assert lines[1] == "[   0.5s] search: 5 front=4 unit_less=True"
    assert "/" not in lines[1]
    assert lines[-1].endswith("(done)")


def test_odd_field_values_never_raise(clock):
    class Bad:
        def __str__(self):
            raise ValueError("no str")

        def __repr__(self):
            raise ValueError("no repr")

    out = io.StringIO()
    with ProgressDisplay("x", total=float("nan"), stream=out, plain_every_s=0) as p:
        p.update("not a number", a=None, b=float("nan"), c=Bad(), d="line\nbreak", e="y" * 100, f=1e7 + 0.5,
                 g=0.000123456, h=[1, 2])
    text = out.getvalue()
    assert "a=None b=nan c=? d=line break" in text
    assert re.search(r"e=y{39}…", text)
    assert "f=10000000" in text and "g=0.0001235" in text and "h=[1, 2]" in text


class BrokenStream(io.StringIO):
    """A stream whose every write fails (a closed pipe), keeping what it was asked to write."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.asked: list[str] = []

    def write(self, s: str) -> int:
        self.asked.append(s)
        raise self.error


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), ValueError("I/O operation on closed file.")])
def test_broken_stream_is_ignored(clock, error):
    """Writes to a broken stream fail silently: the display keeps its state and goes on
    trying (status, log line, final line), and never ends the run."""
    out = BrokenStream(error)
    with ProgressDisplay("x", stream=out, plain_every_s=0) as p:
        p.update(1, a=1)
        p.log("hello")
        clock.t += 1
        p.update(2, a=2)
    assert p.done == 2 and p.fields == {"a": 2}
    asked = "".join(out.asked)
    assert "x: 1 a=1" in asked and "hello" in asked and "x: 2 a=2" in asked and "(done)" in asked


def test_broken_stream_does_not_hide_the_runs_own_error(clock):
    out = BrokenStream(BrokenPipeError(32, "Broken pipe"))
    with pytest.raises(KeyError, match="the run's"):
        with ProgressDisplay("x", stream=out):
            raise KeyError("the run's")
    assert "(stopped by KeyError)" in "".join(out.asked)


def test_rich_live_display_on_a_terminal(clock):
    pytest.importorskip("rich")
    out = TTYStringIO()
    with ProgressDisplay("search", total=40, unit="archs", stream=out) as p:
        assert p._progress is not None  # live rich display, not plain lines
        p.update(10, proposed=12, hv=0.61)
        p.log("hello [red]world")  # no markup interpretation
    text = out.getvalue()
    assert "search" in text and "10/40 archs" in text and "proposed=12 hv=0.61" in text
    assert "hello [red]world" in text
    assert "\x1b[" in text  # terminal control codes, i.e. not the plain format
    assert not re.search(r"^\[ +\d+\.\ds\] search:", text, re.M)
