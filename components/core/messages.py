"""How an error message quotes what it was given: ``repr``, cut, so that a message never
echoes unbounded input (request bodies, labels, column names)."""

from __future__ import annotations

from typing import Any


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: errors never echo unbounded input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def printable(value: Any) -> str:
    """``str(value)`` with control characters escaped (``\\n``, ``\\x1b``): a file name with a
    newline or an escape sequence is printed and stored as text, never run by a terminal."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)  # fmt: skip
