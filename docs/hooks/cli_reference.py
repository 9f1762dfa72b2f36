"""The command-line reference, generated from the ``tuner`` command itself when the docs build.

``docs/reference/cli.md`` holds the prose and the marker ``<!-- cli-reference -->``; this MkDocs
hook replaces the marker with one section per command: what it does, its usage line, and its
arguments and options as ``tuner COMMAND --help`` describes them, so the page cannot drift
from the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MARKER = "<!-- cli-reference -->"
PAGE = "reference/cli.md"


@dataclass(frozen=True)
class CommandDoc:
    """One command as the reference shows it."""

    name: str
    help: str
    usage: str
    params: tuple[tuple[str, str], ...]
    """(how it is written, what it does) per argument and option."""


def commands() -> list[CommandDoc]:
    """Every command of ``tuner``, in the order ``tuner --help`` lists them."""
    import typer.main

    from tuner.cli import app

    group = typer.main.get_command(app)
    found = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        context = group.context_class(command, info_name=f"tuner {name}")
        records = (param.get_help_record(context) for param in command.params)
        found.append(
            CommandDoc(
                name=name,
                help=" ".join((command.help or "").split()),
                usage=command.get_usage(context).removeprefix("Usage: "),
                params=tuple(record for record in records if record is not None),
            )
        )
    return found


def render(found: list[CommandDoc]) -> str:
    """The reference as markdown: per command a heading, what it does, usage and a table."""
    out: list[str] = []
    for command in found:
        out.append(f"## `tuner {command.name}` {{#{command.name}}}\n")
        out.append(command.help + "\n")
        out.append(f"```text\n{command.usage}\n```\n")
        if command.params:
            out.append("| argument or option | meaning |")
            out.append("|---|---|")
            for written, meaning in command.params:
                out.append(f"| `{written}` | {escape_pipes(' '.join(meaning.split()))} |")
            out.append("")
    return "\n".join(out)


def escape_pipes(text: str) -> str:
    """``|`` escaped for a table cell, except inside `code`, where tables leave it alone."""
    parts = text.split("`")
    return "`".join(part if i % 2 else part.replace("|", "\\|") for i, part in enumerate(parts))


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs hook: fills in the command-line reference page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its marker {MARKER}; put it back where the tables go")
    return markdown.replace(MARKER, render(commands()))


if __name__ == "__main__":
    print(render(commands()))
