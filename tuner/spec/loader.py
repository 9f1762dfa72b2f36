"""Reading a spec from YAML: every problem at once, each with its file, line and column.

One job, reading specs: a spec built in Python (:func:`spec_from_mapping`) goes through the
same checks, so both forms say the same thing about the same mistake.

The YAML is parsed with a safe loader that keeps every node's position, refuses duplicate
keys, oversized files and alias bombs; numbers no engine can use are caught on the raw data;
the model's errors are mapped back onto the file; the trial function's import is checked apart
so that it hides nothing else.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import yaml
from pydantic import ValidationError

from tuner.backend import FunctionEntry
from tuner.functions import resolve_function
from tuner.secrets import MASK
from tuner.spec.issues import (
    SpecError,
    SpecIssue,
    _clip,
    _dotted,
    _is_secret_path,
    _issues_from,
    _kind,
    _Path,
    _shown,
)
from tuner.spec.model import StudySpec
from tuner.spec.sections import _FUNCTION_PATTERN, MAX_INT

MAX_SPEC_BYTES = 1_000_000
"""The largest spec file read: a spec describes a study; data belongs in files it names."""


MAX_YAML_NODES = 100_000
"""The most values a spec may expand to (YAML aliases can multiply a small file)."""


_Location: TypeAlias = tuple[int, int]


class _LocatingLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys and remembers where every node is."""


@dataclass
class _Nodes:
    """Where every key and value of a YAML document is, and what is wrong with its shape."""

    keys: dict[_Path, _Location]
    values: dict[_Path, _Location]
    problems: list[tuple[_Path, _Location, str]]
    count: int = 0

    def where(self, path: _Path) -> tuple[int | None, int | None]:
        """The line and column of the value at ``path`` (or of its nearest enclosing one)."""
        found = self.values.get(path) or self.keys.get(path)
        probe = path
        while found is None and probe:
            probe = probe[:-1]
            found = self.values.get(probe)
        return found if found else (None, None)

    def key_where(self, path: _Path) -> tuple[int | None, int | None]:
        """The line and column of the key at ``path`` (for an unknown key)."""
        found = self.keys.get(path)
        return found if found else self.where(path)

    def walk(self, node: yaml.Node, path: _Path, ancestors: frozenset[int]) -> bool:
        """Records ``node`` and its children; ``False`` once the document is too big to read."""
        self.count += 1
        where = (node.start_mark.line + 1, node.start_mark.column + 1)
        if self.count > MAX_YAML_NODES:
            self.problems.append(
                (
                    path,
                    where,
                    f"the spec expands to more than {MAX_YAML_NODES:,} values (an alias counts "
                    "each time it is used); data belongs in files the trial reads, not in the "
                    "spec",
                )
            )
            return False
        if id(node) in ancestors:
            self.problems.append((path, where, "this alias refers to itself; remove the loop"))
            return False
        self.values.setdefault(path, where)
        inner = ancestors | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
                child = (*path, key)
                key_where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in seen:
                    self.problems.append(
                        (child, key_where, f"`{key}` is given twice; keep one of them")
                    )
                seen.add(key)
                self.keys[child] = key_where
                if not self.walk(value_node, child, inner):
                    return False
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                if not self.walk(item, (*path, index), inner):
                    return False
        return True


def load_spec(path: str | os.PathLike[str], *, import_trial: bool = True) -> StudySpec:
    """Reads and validates a YAML study spec.

    Args:
        path: the spec file (UTF-8, at most ``MAX_SPEC_BYTES``).
        import_trial: whether to check that ``trial.function`` imports. Commands that only read
            a study (``tuner status``) pass ``False``, so they never run the study's code.

    Raises:
        SpecError: naming file, line, column and field of every problem, with how to fix it.
    """
    spec_path = Path(path)
    source = str(spec_path)
    try:
        with open(spec_path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(
            [SpecIssue(source, None, None, "", f"cannot read the spec ({reason}); check the path")]
        ) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError([_too_big(source, max(size, len(raw)))])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line_start = raw.rfind(b"\n", 0, offset) + 1
        raise SpecError(
            [
                SpecIssue(
                    source,
                    raw.count(b"\n", 0, offset) + 1,
                    offset - line_start + 1,
                    "",
                    f"not UTF-8 text (byte 0x{raw[offset]:02x} at offset {offset}); save the "
                    "file as UTF-8",
                )
            ]
        ) from None
    spec_dir = str(spec_path.resolve().parent)
    return load_spec_text(text, source, spec_dir=spec_dir, import_trial=import_trial)


def _too_big(source: str, size: int) -> SpecIssue:
    return SpecIssue(
        source,
        None,
        None,
        "",
        f"the spec is {size:,} bytes, more than the {MAX_SPEC_BYTES:,} a spec may have; data "
        "belongs in files the trial reads, not in the spec",
    )


def load_spec_text(
    text: str,
    source: str = "<spec>",
    spec_dir: str | None = None,
    *,
    import_trial: bool = True,
) -> StudySpec:
    """Validates a study spec given as YAML text; see :func:`load_spec`.

    Every problem is reported at once: YAML structure, each field, the checks across sections
    and (with ``import_trial``) whether the trial function imports.
    """
    size = len(text) if len(text) * 4 <= MAX_SPEC_BYTES else len(text.encode("utf-8", "replace"))
    if size > MAX_SPEC_BYTES:
        raise SpecError([_too_big(source, size)])
    node, data = _parse_yaml(text, source)
    if node is None or data is None:
        raise SpecError([SpecIssue(source, 1, 1, "", "the spec is empty; see `tuner schema`")])
    nodes = _Nodes({}, {}, [])
    complete = nodes.walk(node, (), frozenset())
    issues = [SpecIssue(source, *where, _dotted(p), msg) for p, where, msg in nodes.problems]
    if not complete:
        raise SpecError(issues)
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecIssue(
                    source,
                    *nodes.values[()],
                    "",
                    f"the spec must be a mapping of sections (`name:`, `objective:`, `space:`, "
                    f"`trial:` ...), not {_kind(data)}; see `tuner schema`",
                )
            ]
        )

    if "name" not in data and source != "<spec>":
        data["name"] = re.sub(r"[^A-Za-z0-9._-]", "-", Path(source).stem)[:63] or "study"
    return _validate(data, nodes, issues, source, spec_dir, import_trial=import_trial)


def spec_from_mapping(
    data: dict[str, Any],
    source: str = "tuner.Study",
    spec_dir: str | None = None,
    *,
    import_trial: bool = True,
) -> StudySpec:
    """Validates a study spec given as Python values, with the checks and messages of YAML.

    Sections may hold what YAML holds (mappings, lists, scalars) or the Python objects they
    stand for (:class:`~tuner.space.Float`, a section model, a backend config, a callable).

    Raises:
        SpecError: every problem at once; an issue's location is its field path.
    """
    copied = _copy_containers(data)
    return _validate(copied, _Nodes({}, {}, []), [], source, spec_dir, import_trial=import_trial)


def _copy_containers(value: Any) -> Any:
    """``value`` with its dicts and lists copied (checks replace bad numbers in place)."""
    if isinstance(value, dict):
        return {key: _copy_containers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_containers(item) for item in value]
    return value


def _validate(
    data: dict[str, Any],
    nodes: _Nodes,
    issues: list[SpecIssue],
    source: str,
    spec_dir: str | None,
    *,
    import_trial: bool,
) -> StudySpec:
    """The checks a spec's data goes through, whether it came from YAML or Python."""
    flagged = _check_numbers(data, ())
    for loc, message in flagged:
        issues.append(SpecIssue(source, *nodes.where(loc), _dotted(loc), message))
        _replace(data, loc, None)  # reported here; the model would only report it again
    spec: StudySpec | None = None
    try:
        spec = StudySpec.model_validate(data, context={"spec_dir": spec_dir, "import_trial": False})
    except ValidationError as exc:
        for issue_loc, issue in _issues_from(exc, data, nodes, source):
            if not any(issue_loc[: len(loc)] == loc for loc, _ in flagged):
                issues.append(issue)
    if import_trial:
        issues.extend(_import_issues(data, spec, spec_dir, issues, nodes, source))
    if issues:
        issues.sort(key=lambda i: (i.line is None, i.line or 0, i.column or 0))
        raise SpecError(issues)
    assert spec is not None
    return spec


def _parse_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    loader: _LocatingLoader | None = None
    try:
        loader = _LocatingLoader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(
            [SpecIssue(source, line, col, "", f"invalid YAML: {problem}; fix the syntax here")]
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SpecError(
            [
                SpecIssue(
                    source,
                    line,
                    col,
                    "",
                    f"invalid YAML: the character {exc.character!r} is not allowed in YAML; "
                    "remove it (or quote and escape it)",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(source, None, None, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise SpecError(
            [SpecIssue(source, None, None, "", "the spec is nested too deeply; flatten it")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, data


def _check_numbers(node: Any, path: _Path) -> list[tuple[_Path, str]]:
    """Numbers no engine can use: beyond 64 bits, NaN or infinite, or ranges that overflow."""
    found: list[tuple[_Path, str]] = []
    if isinstance(node, bool):
        return found
    if isinstance(node, int) and abs(node) > MAX_INT:
        found.append(
            (
                path,
                f"{_shown(node, path)} is too large; numbers in a spec must lie within "
                f"±{MAX_INT} (64 bits)",
            )
        )
    elif isinstance(node, float) and not math.isfinite(node):
        shown = (
            MASK
            if _is_secret_path(path)
            else {"nan": ".nan", "inf": ".inf"}.get(str(node), "-.inf")
        )
        found.append((path, f"`{shown}` is not a finite number; write a finite number"))
    elif isinstance(node, dict):
        for key, value in node.items():
            found.extend(_check_numbers(value, (*path, key)))
        if len(path) == 2 and path[0] == "space" and not found:
            found.extend(_check_range(node, path))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found.extend(_check_numbers(item, (*path, index)))
    return found


def _as_number(value: Any) -> float | None:
    """``value`` as pydantic will read a bound (YAML reads ``1e3`` as a string), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if abs(value) <= 1e308 else math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _check_range(param: dict[Any, Any], path: _Path) -> list[tuple[_Path, str]]:
    """A float or int range no engine can sample, with its values as YAML spells them."""
    found: list[tuple[_Path, str]] = []
    bounds = {key: _as_number(param.get(key)) for key in ("low", "high", "step")}
    for key in ("low", "high", "step"):
        number = bounds[key]
        if number is not None and not math.isfinite(number):
            found.append(((*path, key), f"{_shown(param[key], ())} is not a finite number"))
        elif number is not None and param.get("type") == "int" and abs(number) > MAX_INT:
            found.append(
                ((*path, key), f"{_shown(param[key], ())} is too large; use at most {MAX_INT}")
            )
    low, high, step = bounds["low"], bounds["high"], bounds["step"]
    if found or low is None or high is None or not low < high:
        return found
    span = high - low
    if not math.isfinite(span):
        return [(path, f"the range [{low:g}, {high:g}] is too wide to sample; narrow it")]
    if step is not None and step > 0 and span / step > 1e15:
        return [
            (
                (*path, "step"),
                f"`step: {step:g}` splits [{low:g}, {high:g}] into more than 10^15 values; use "
                "a larger step, or drop `step` for a continuous range",
            )
        ]
    return []


def _replace(data: Any, path: _Path, value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _import_issues(
    data: dict[str, Any],
    spec: StudySpec | None,
    spec_dir: str | None,
    issues: list[SpecIssue],
    nodes: _Nodes,
    source: str,
) -> list[SpecIssue]:
    """The trial function's import problem, checked apart so it hides nothing else."""
    trial = data.get("trial")
    function = trial.get("function") if isinstance(trial, dict) else None
    if not isinstance(function, str) or not re.fullmatch(_FUNCTION_PATTERN, function):
        return []  # a malformed reference is already a field error
    if any(i.field == "trial.function" for i in issues):
        return []  # e.g. a backend that runs only commands: importing would add nothing
    if spec is not None and isinstance(spec.trial.entry, FunctionEntry):
        search_path = spec.trial.entry.search_path
    else:
        assert isinstance(trial, dict)
        extra = trial.get("path")
        folders = [p for p in extra if isinstance(p, str)] if isinstance(extra, list) else []
        search_path = tuple(dict.fromkeys(p for p in (os.getcwd(), spec_dir, *folders) if p))
    try:
        resolve_function(function, search_path)
    except ValueError as exc:
        loc = ("trial", "function")
        return [SpecIssue(source, *nodes.where(loc), _dotted(loc), _clip(str(exc)))]
    return []
