"""How an error message quotes what it was given: ``repr``, cut, so that a message never
echoes unbounded input (request bodies, labels, column names)."""

from __future__ import annotations

from typing import Any


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: errors never echo unbounded input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"
