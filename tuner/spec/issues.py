"""Spec problems as a researcher reads them: where, which field, what is wrong, what to do."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from pydantic import BaseModel, ValidationError

from tuner.backend import BackendConfig
from tuner.errors import InputError
from tuner.hints import closest as _closest
from tuner.plugins import backend_class
from tuner.secrets import MASK, is_secret_name
from tuner.spec.sections import _CUSTOM_KINDS, UNION_TAGS

if TYPE_CHECKING:
    from tuner.spec.loader import _Nodes


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec: where it is, what is wrong, and how to fix it."""

    path: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        # One line per issue, whatever the message quotes (a traceback, a multi-line value).
        message = " ".join(self.message.split())
        return f"{where}: {self.field or '(spec)'}: {message}"


class SpecError(InputError):
    """A spec that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


_Path: TypeAlias = tuple[Any, ...]


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


_MAX_MESSAGE = 600
"""Characters of a message beyond which its middle is cut."""


def _issues_from(
    exc: ValidationError, data: Any, nodes: _Nodes, source: str
) -> list[tuple[_Path, SpecIssue]]:
    issues = []
    for error in exc.errors(include_url=False):
        loc = _data_path(error["loc"], data)
        if error["type"] == "extra_forbidden":
            line, col = nodes.key_where(loc)
        else:
            line, col = nodes.where(loc)
        message = _clip(_explain(error, loc, data))
        issues.append((loc, SpecIssue(source, line, col, _dotted(loc), message)))
    return issues


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drops the parts of a pydantic location that are not in the data (union tags)."""
    path: list[Any] = []
    node = data
    for part in loc:
        in_mapping = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_mapping or in_list:
            path.append(part)
            node = node[part]
        elif isinstance(node, Mapping) and node.get("type") == part:
            continue  # the discriminator's tag
        elif part in UNION_TAGS:
            continue  # a union told apart by shape
        else:
            path.append(part)
            node = None
    return tuple(path)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _resolve_model(annotation: Any, node: Any) -> Any:
    """Narrows a field's annotation to the model (or ``dict`` type) that ``node`` is read as."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [_unwrapped(a) for a in typing.get_args(annotation)]
        lists = [a for a in members if typing.get_origin(a) is list]
        if isinstance(node, list) and lists:
            return lists[0]
        models = [a for a in members if _is_model(a)]
        kind = node.get("type") if isinstance(node, Mapping) else None
        for model in models:
            type_field = model.model_fields.get("type")
            if type_field is not None and type_field.default == kind:
                return model
        return models[0] if len(models) == 1 else None
    if annotation is BackendConfig and isinstance(node, Mapping):
        try:
            return backend_class(str(node.get("type"))).Config
        except Exception:
            return None
    return annotation


def _unwrapped(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys_at(path: tuple[Any, ...], data: Any) -> list[str]:
    """The keys a mapping at ``path`` may hold, or ``[]`` if that is not known."""
    from tuner.spec.model import StudySpec

    target: Any = StudySpec
    node = data
    for key in path:
        target = _resolve_model(target, node)
        if _is_model(target):
            field = target.model_fields.get(key)
            if field is None:
                return []
            target = field.annotation
        elif typing.get_origin(target) is dict:
            target = typing.get_args(target)[1]
        elif typing.get_origin(target) is list and isinstance(key, int):
            target = _unwrapped(typing.get_args(target)[0])
        else:
            return []
        node = node.get(key) if isinstance(node, Mapping) else None
    target = _resolve_model(target, node)
    return list(target.model_fields) if _is_model(target) else []


def _is_secret_path(loc: _Path) -> bool:
    return any(is_secret_name(part) for part in loc if isinstance(part, str))


def _shown(value: Any, loc: _Path) -> str:
    """``value`` as a message quotes it: YAML spelling, clipped, and never a secret."""
    if _is_secret_path(loc):
        return MASK
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:45]}...{text[-10:]}"


def _clip(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return f"{message[: _MAX_MESSAGE - 100]} ... {message[-90:]}"


def _explain(error: Any, loc: tuple[Any, ...], data: Any) -> str:
    kind = error["type"]
    field = str(loc[-1]) if loc else "spec"
    message = str(error["msg"])
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = [k for k in _keys_at(loc[:-1], data) if k != "type"]
        close = _closest(field, allowed)
        hint = f"did you mean `{close}`?" if close else "remove it"
        known = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"unknown key `{field}`; {hint}{known}"
    if kind == "missing":
        return f"`{field}` is required here; add it"
    if kind in ("union_tag_not_found",):
        return f"{message}; add `type:` (for example `type: float`)"
    if kind == "union_tag_invalid":
        return message
    if kind in ("literal_error", "enum"):
        return f"{message}, got {_shown(value, loc)}"
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "assertion_error":
        return message.removeprefix("Assertion failed, ")
    if kind in _CUSTOM_KINDS:
        return message
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"`{field}` must be a mapping (`key: value` lines or `{{...}}`), not {_kind(value)}"
    if kind == "list_type":
        return f"`{field}` must be a list such as `[a, b]`, not {_kind(value)}"
    if kind == "string_pattern_mismatch" and field == "name":
        return (
            f"{_shown(value, loc)} is not a valid study name; use up to 63 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if "input" in error and not isinstance(value, dict | list):
        return f"{message}, got {_shown(value, loc)}"
    return message
