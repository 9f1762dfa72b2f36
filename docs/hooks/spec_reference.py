"""The spec reference page, generated from the spec's JSON Schema when the docs are built.

``docs/reference/spec.md`` holds the prose and the marker ``<!-- spec-reference -->``; this
MkDocs hook replaces the marker with one section per part of the spec (a section model, or one
variant of a tagged union such as ``strategy: {type: bayesian}``): every field with its type,
default, limits (``minimum``, ``pattern``, ``enum`` ...), description and an example.

The schema says everything but examples. Those live in ``spec_examples.yaml`` beside this file:
per section, one or more *fragments* of a spec (top-level sections, as a user writes them), and
a field's example is its value in the first fragment that sets it. The docs tests check that
every field has one and that every fragment, put into a spec, passes ``tuner validate``.

Run it by hand to see the page: ``python docs/hooks/spec_reference.py``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MARKER = "<!-- spec-reference -->"
PAGE = "reference/spec.md"
EXAMPLES_FILE = Path(__file__).with_name("spec_examples.yaml")
BUILTIN_BACKENDS = ("ray", "sagemaker")
"""The backends that ship with tuner; a plug-in documents its own options."""

ANY_ENTRY = "*"
"""In a section's path, any entry of a mapping (``space.<name>``) or a list."""

_MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class FieldDoc:
    """One field of a section, as the reference shows it (markdown strings)."""

    name: str
    type: str
    default: str
    limits: str
    description: str
    example: str | None


@dataclass(frozen=True)
class SectionDoc:
    """A section model, or one variant of a union, at a path in the spec."""

    id: str
    model: str
    path: tuple[str, ...]
    variant: str | None
    within: str | None
    description: str
    fields: tuple[FieldDoc, ...]
    examples: tuple[Mapping[str, Any], ...]

    @property
    def title(self) -> str:
        """The section's place in a spec, e.g. ``space.<name>`` with ``type: float``."""
        if not self.path:
            return "Top level"
        where = f"`{_display_path(self.path)}`"
        if self.variant:
            return f"{where} (`type: {self.variant}`)"
        return f"{where} ({self.within})" if self.within else where


# --- the schema and the examples ------------------------------------------------------------


def reference_schema() -> dict[str, Any]:
    """The spec's JSON Schema with the built-in backends' options and every default.

    pydantic leaves defaults made by a factory out of a JSON Schema; the spec's own (strategy,
    pruner, backend) are filled in from the model here.
    """
    from pydantic import BaseModel

    from tuner.spec import StudySpec, spec_json_schema

    schema = spec_json_schema()
    backend = schema["properties"]["backend"]
    backend["oneOf"] = [
        variant
        for variant in backend.get("oneOf", [])
        if _variant_name(variant) in BUILTIN_BACKENDS
    ]
    for name, field in StudySpec.model_fields.items():
        prop = schema["properties"][name]
        if field.default_factory is not None and "default" not in prop:
            value = field.default_factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel) and hasattr(value, "type"):
                prop["default"] = {"type": value.type}
    return schema


def load_examples(path: Path = EXAMPLES_FILE) -> dict[str, list[dict[str, Any]]]:
    """Section id -> the spec fragments that show it."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {key: value if isinstance(value, list) else [value] for key, value in data.items()}


def find_section(fragment: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The object at ``path`` in ``fragment`` (``*``: the last entry), or ``None``."""
    node: Any = fragment
    for key in path:
        if key == ANY_ENTRY:
            if isinstance(node, Mapping) and node:
                node = list(node.values())[-1]
            elif isinstance(node, list) and node:
                node = node[-1]
            else:
                return None
        elif isinstance(node, Mapping) and key in node:
            node = node[key]
        else:
            return None
    return node


# --- schema -> sections ---------------------------------------------------------------------


def sections(
    schema: Mapping[str, Any], examples: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[SectionDoc]:
    """Every section of the spec, depth first in the order of the schema's properties."""
    walker = _Walker(schema.get("$defs", {}), examples)
    walker.visit("spec", (), None, None, schema)
    return walker.found


_Child = tuple[str, tuple[str, ...], str | None, Mapping[str, Any]]
"""A section a field holds: its id, path, variant name (of a union) and schema."""


class _Walker:
    def __init__(
        self,
        defs: Mapping[str, Any],
        examples: Mapping[str, Sequence[Mapping[str, Any]]],
    ):
        self.defs = defs
        self.examples = examples
        self.found: list[SectionDoc] = []

    def visit(
        self,
        section_id: str,
        path: tuple[str, ...],
        variant: str | None,
        within: str | None,
        node: Mapping[str, Any],
    ) -> None:
        node = self.resolve(node)
        fragments = tuple(self.examples.get(section_id, ()))
        index = len(self.found)
        model = str(node.get("title", ""))
        self.found.append(SectionDoc(section_id, model, path, variant, within, "", (), fragments))
        props = {name: self.inline(prop) for name, prop in node.get("properties", {}).items()}
        required = set(node.get("required", ()))
        held = {
            name: list(self.children(section_id, path, name, prop)) for name, prop in props.items()
        }
        # A union's variant is chosen by its `type`, which must then be written out.
        required |= {"type"} if variant is not None else set()
        fields = tuple(
            FieldDoc(
                name=name,
                type=self.type_of(prop, held[name]),
                default=_default_of(prop, name in required),
                limits=_limits_of(prop),
                description=_clean(prop.get("description", "")),
                example=_example_of(prop, name, path, fragments),
            )
            for name, prop in props.items()
        )
        description = _clean(node.get("description", ""))
        self.found[index] = SectionDoc(
            section_id, model, path, variant, within, description, fields, fragments
        )
        for kids in held.values():
            for child_id, child_path, child_variant, child_node in kids:
                self.visit(child_id, child_path, child_variant, variant or within, child_node)

    def children(
        self, parent_id: str, path: tuple[str, ...], name: str, prop: Mapping[str, Any]
    ) -> Iterator[_Child]:
        """The sections a property holds: a model, a union's variants, entries of a map/list.

        A model reached twice (``objective``: one, or a list of them) is one section.
        """
        base_id = (name if parent_id == "spec" else f"{parent_id}-{name}").replace("_", "-")
        models: dict[str, tuple[tuple[str, ...], Mapping[str, Any]]] = {}
        for model_path, node in self._models(prop, (*path, name)):
            models.setdefault(str(self.resolve(node).get("title", "")), (model_path, node))
        variants = {title: _variant_name(self.resolve(node)) for title, (_, node) in models.items()}
        tagged = len(models) > 1 and all(
            "const" in self.resolve(node)["properties"].get("type", {})
            for _, node in models.values()
        )
        for title, (model_path, node) in models.items():
            if tagged:
                yield f"{base_id}-{variants[title]}", model_path, variants[title], node
            elif len(models) == 1:
                yield base_id, model_path, None, node
            else:
                yield f"{base_id}-{title.lower()}", model_path, None, node

    def _models(
        self, prop: Mapping[str, Any], path: tuple[str, ...]
    ) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
        """The object models in ``prop``, through unions, lists and maps, with their paths."""
        for branch in (*prop.get("anyOf", ()), *prop.get("oneOf", ())):
            yield from self._models(branch, path)
        if prop.get("type") == "array" and isinstance(prop.get("items"), Mapping):
            yield from self._models(prop["items"], (*path, ANY_ENTRY))
        elif prop.get("type") == "object" and isinstance(prop.get("additionalProperties"), Mapping):
            yield from self._models(prop["additionalProperties"], (*path, ANY_ENTRY))
        elif "properties" in self.resolve(prop):
            yield path, prop

    def resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str):
            return self.defs[ref.rsplit("/", 1)[-1]]
        return node

    def inline(self, prop: Mapping[str, Any]) -> Mapping[str, Any]:
        """``prop`` with a reference to a plain definition (an enum) put in its place."""
        target = self.resolve(prop)
        if target is prop or "properties" in target:
            return prop
        merged = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
        merged.setdefault("description", target.get("description", ""))
        return merged

    def type_of(self, prop: Mapping[str, Any], held: Sequence[_Child] = ()) -> str:
        """The field's type in words, linking to the sections it holds."""
        links = {
            str(self.resolve(node).get("title", "")): (
                f"[`{variant}`](#{child_id})" if variant else f"[mapping](#{child_id})"
            )
            for child_id, _, variant, node in held
        }
        return self._type_words(prop, links)

    def _type_words(self, prop: Mapping[str, Any], links: Mapping[str, str]) -> str:
        if _is_duration(prop):
            return "[duration](#durations)"
        branches = prop.get("anyOf") or prop.get("oneOf")
        if branches:
            words = [self._type_words(branch, links) for branch in branches]
            return " or ".join(dict.fromkeys(words))
        target = self.resolve(prop)
        if "properties" in target and str(target.get("title", "")) in links:
            return links[str(target.get("title", ""))]
        if target is not prop:
            return self._type_words(target, links)
        if "const" in prop:
            return f"`{_flow(prop['const'])}`"
        kind = prop.get("type")
        if kind == "array":
            items = prop.get("items")
            return f"list of {self._type_words(items, links)}" if items else "list"
        if kind == "object":
            values = prop.get("additionalProperties")
            if isinstance(values, Mapping) and values:
                return f"map of string to {self._type_words(values, links)}"
            return "map"
        if kind == "null":
            return "`null`"
        if kind is None and "enum" in prop:
            return "string"
        return str(kind or "any")


def _variant_name(node: Mapping[str, Any]) -> str:
    type_prop = node.get("properties", {}).get("type", {})
    return str(type_prop.get("const", type_prop.get("default", node.get("title", "?"))))


def _without_null(prop: Mapping[str, Any]) -> Mapping[str, Any]:
    branches = prop.get("anyOf")
    if branches:
        others = [b for b in branches if b.get("type") != "null"]
        if len(others) == 1:
            return {**others[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
    return prop


@functools.cache
def _duration_branches() -> list[Any]:
    from pydantic import TypeAdapter

    from tuner.units import Duration

    return list(TypeAdapter(Duration).json_schema()["anyOf"])


def _is_duration(prop: Mapping[str, Any]) -> bool:
    """Whether ``prop`` is a :data:`tuner.units.Duration` (or one that may be ``null``)."""
    duration = _duration_branches()
    return prop.get("anyOf") == duration or any(
        branch.get("anyOf") == duration for branch in prop.get("anyOf", ())
    )


def _default_of(prop: Mapping[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" in prop:
        default = prop["default"]
        if _is_duration(prop) and isinstance(default, int | float):
            return f"`{duration_text(default)}`"
        return f"`{_flow(_drop_nulls(default))}`"
    kind = _without_null(prop).get("type")
    if kind == "array":
        return "`[]`"
    if kind == "object":
        return "`{}`"
    return "`null`"


def _limits_of(prop: Mapping[str, Any]) -> str:
    """``minimum``, ``pattern``, ``enum`` ... of the field and of its non-null branches."""
    limits: list[str] = []

    def collect(node: Mapping[str, Any], in_duration: bool) -> None:
        def number(value: Any) -> str:
            if in_duration:
                return duration_text(value)
            return "2⁶³ - 1" if value == _MAX_INT else _flow(value)

        for key, words in (
            ("minimum", "≥"),
            ("ge", "≥"),
            ("exclusiveMinimum", ">"),
            ("gt", ">"),
            ("maximum", "≤"),
            ("le", "≤"),
            ("exclusiveMaximum", "<"),
            ("lt", "<"),
        ):
            # A duration's own lower bound (positive) is part of what a duration is.
            if key in node and not (in_duration and key == "exclusiveMinimum"):
                limits.append(f"{words} {number(node[key])}")
        if node.get("minLength") == 1:
            limits.append("not empty")
        elif "minLength" in node:
            limits.append(f"at least {node['minLength']} characters")
        if "maxLength" in node:
            limits.append(f"at most {node['maxLength']} characters")
        if node.get("minItems") == 1:
            limits.append("at least one item")
        elif "minItems" in node:
            limits.append(f"at least {node['minItems']} items")
        if "maxItems" in node:
            limits.append(f"at most {node['maxItems']} items")
        if "pattern" in node and not in_duration:
            limits.append(f"matches `{node['pattern']}`")
        if "enum" in node:
            limits.append("one of " + ", ".join(f"`{_flow(v)}`" for v in node["enum"]))

    if _is_duration(prop):
        collect(prop, True)
        for branch in prop.get("anyOf", ()):
            if "anyOf" in branch:  # an optional duration
                collect(branch, True)
    else:
        collect(prop, False)
        for branch in prop.get("anyOf", ()):
            if branch.get("type") != "null":
                collect(branch, False)
    return escape_pipes("; ".join(dict.fromkeys(limits)))


def _example_of(
    prop: Mapping[str, Any],
    name: str,
    path: tuple[str, ...],
    fragments: Sequence[Mapping[str, Any]],
) -> str | None:
    for value in prop.get("examples", ()):
        return _inline_example(name, value)
    for fragment in fragments:
        section = find_section(fragment, path)
        if isinstance(section, Mapping) and name in section:
            return _inline_example(name, section[name])
    return None


def _inline_example(name: str, value: Any) -> str:
    text = f"{name}: {_flow(value)}"
    return f"`{text}`" if len(text) <= _INLINE_WIDTH else "see the examples below"


_INLINE_WIDTH = 60


def duration_text(seconds: float) -> str:
    """Seconds as a spec writes a duration: ``86400`` -> ``1d``, ``90`` -> ``1m30s``."""
    parts = []
    rest = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{int(count)}{unit}")
    if rest or not parts:
        return _flow(seconds)
    return "".join(parts)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value


def _flow(value: Any) -> str:
    """``value`` as inline YAML, as a spec would write it."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _clean(text: str) -> str:
    """A docstring as one markdown paragraph: RST ``literals`` become `code`, no doctest."""
    text = re.split(r"\n\s*Example[s]?:\s*\n", text, maxsplit=1)[0]
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return escape_pipes(" ".join(text.split()))


def escape_pipes(text: str) -> str:
    """``|`` escaped for a table cell, except inside `code`, where tables leave it alone."""
    parts = text.split("`")
    return "`".join(part if i % 2 else part.replace("|", "\\|") for i, part in enumerate(parts))


def _display_path(path: Sequence[str]) -> str:
    shown = ""
    for index, key in enumerate(path):
        if key == ANY_ENTRY:
            parent = path[index - 1] if index else ""
            shown += "[]" if parent in _LIST_FIELDS else f".<{_ENTRY_NAMES.get(parent, 'name')}>"
        else:
            shown += ("." if shown else "") + key
    return shown


_LIST_FIELDS = {"metric_definitions"}
_ENTRY_NAMES = {"space": "name", "inputs": "channel"}


# --- sections -> markdown -------------------------------------------------------------------


def render(found: Sequence[SectionDoc]) -> str:
    """The reference as markdown: per section a heading, its description, a table, examples."""
    out: list[str] = []
    for section in found:
        out.append(f"## {section.title} {{#{section.id}}}\n")
        if section.description:
            out.append(section.description + "\n")
        out.append("| field | type | default | limits | description | example |")
        out.append("|---|---|---|---|---|---|")
        for field in section.fields:
            out.append(
                f"| `{field.name}` | {field.type} | {field.default} | {field.limits} | "
                f"{field.description} | {field.example or ''} |"
            )
        out.append("")
        for fragment in section.examples:
            out.append("```yaml\n" + to_yaml(fragment) + "```\n")
    return "\n".join(out)


def to_yaml(value: Mapping[str, Any], indent: int = 0, width: int = 88) -> str:
    """Block YAML whose small mappings and lists stay on one line, as people write specs."""
    lines: list[str] = []
    pad = " " * indent
    for key, item in value.items():
        flow = f"{pad}{_flow(key)}: {_flow(item)}"
        if len(flow) <= width or not isinstance(item, Mapping | list) or not item:
            lines.append(flow)
        elif isinstance(item, Mapping):
            lines.append(f"{pad}{_flow(key)}:")
            lines.append(to_yaml(item, indent + 2, width).rstrip("\n"))
        else:
            lines.append(f"{pad}{_flow(key)}:")
            lines.extend(f"{pad}  - {_flow(entry)}" for entry in item)
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The generated part of the spec reference page."""
    return render(sections(reference_schema(), load_examples()))


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs hook: fills in the spec reference page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its marker {MARKER}; put it back where the tables go")
    return markdown.replace(MARKER, reference_markdown())


if __name__ == "__main__":
    print(reference_markdown())
