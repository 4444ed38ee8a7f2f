"""Progress bars show on a terminal only, and never under quiet() (the CLI's --quiet)."""

from __future__ import annotations

import io

from responsibility.progress import bar, quiet


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn(stream: io.StringIO) -> str:
    for _ in bar(range(3), desc="work", file=stream, mininterval=0):
        pass
    return stream.getvalue()


def test_a_bar_draws_on_a_terminal():
    assert "work" in drawn(Terminal()) and "3/3" in drawn(Terminal())


def test_no_bar_off_a_terminal_or_when_quiet():
    assert drawn(io.StringIO()) == ""
    with quiet():
        assert drawn(Terminal()) == ""
        with quiet(enabled=False):  # an inner block cannot turn bars back on
            assert drawn(Terminal()) == ""
    assert "work" in drawn(Terminal())  # quiet() ends with its block
