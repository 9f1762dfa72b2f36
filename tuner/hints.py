"""Did-you-mean hints: the likeliest intended spelling among the options."""

from __future__ import annotations

import difflib


def closest(word: str, options: list[str]) -> str | None:
    """The likeliest intended option: a transposition first, then the nearest spelling."""
    for option in options:
        if sorted(option) == sorted(word):
            return option
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return close[0] if close else None
