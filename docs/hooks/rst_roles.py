"""A griffe extension for the API reference: Sphinx roles in docstrings become code.

tuner's docstrings cross-reference with Sphinx roles (``:class:`~tuner.Float```), which
MkDocs would print as they are; this shows them as code (`Float`), as the ``~`` asks.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")


def plain(text: str) -> str:
    """``text`` with every Sphinx role replaced by its target as code."""

    def shown(match: re.Match[str]) -> str:
        target = match["target"]
        return f"`{target.rsplit('.', 1)[-1] if match['tilde'] else target}`"

    return _ROLE.sub(shown, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called by griffe for each object it loads."""
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
