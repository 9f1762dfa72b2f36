"""The site's home page is the repository's README.md, so there is no second copy to drift.

``docs/index.md`` holds only the marker ``<!-- readme -->``; this MkDocs hook replaces it with
README.md. The README's relative links are written from the repository's root (GitHub shows
it there): a link into ``docs/`` becomes the page's link from the site's root
(``docs/guides/mlflow.md#x`` is ``guides/mlflow.md#x``), and a link to any other file of the
repository (``examples/quickstart/README.md``) goes to that file on ``repo_url``, the
repository's web address in mkdocs.yml. Links in code blocks are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MARKER = "<!-- readme -->"
PAGE = "index.md"
ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
DOCS = "docs/"

# A markdown link or image `](target)`, a reference definition `[x]: target`, an HTML
# `src="target"` or `href="target"`: the target is group "target".
_LINK = re.compile(
    r"(?P<before>\]\(\s*<?|^\s*\[[^\]]+\]:\s*<?|\b(?:src|href)=[\"'])(?P<target>[^\s)>\"']+)",
    re.MULTILINE,
)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def site_link(target: str, repo_url: str | None) -> str:
    """Where a README link to ``target`` goes on the site.

    Raises:
        ValueError: for a link to a repository file outside ``docs/`` when mkdocs.yml has no
            ``repo_url`` to link it on.
    """
    if urlsplit(target).scheme or target.startswith(("#", "/")):
        return target
    path = target.removeprefix("./")
    if path.startswith(DOCS):
        return path.removeprefix(DOCS)
    if repo_url is None:
        raise ValueError(
            f"README.md links to {target!r}, which is outside docs/ and so not on the site; "
            "link to a docs page instead, or set `repo_url` in mkdocs.yml to link the file "
            "in the repository"
        )
    return f"{repo_url.rstrip('/')}/blob/HEAD/{path}"


def home_page(readme: str, repo_url: str | None = None) -> str:
    """The README with its links rewritten for the site's root (see the module's docstring)."""
    out: list[str] = []
    fence: str | None = None
    for line in readme.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening[1]
        elif fence is not None and line.strip().startswith(fence) and not line.strip(" `~\n"):
            fence = None
        elif fence is None:
            line = _LINK.sub(
                lambda found: found["before"] + site_link(found["target"], repo_url), line
            )
        out.append(line)
    return "".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, **_: Any) -> str:
    """MkDocs hook: makes the home page the README."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its marker {MARKER}; the home page is README.md")
    return markdown.replace(MARKER, home_page(README.read_text(encoding="utf-8"), _repo(config)))


def _repo(config: Any) -> str | None:
    url = config.get("repo_url") if config is not None else None
    return str(url) if url else None
