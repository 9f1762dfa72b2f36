"""``module:function`` references: checked when a spec loads, imported where a trial runs.

The one resolver of trial functions, used by the spec (to check the reference and say what is
wrong with it) and by the trial runner on a worker (to import it).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tuner.backend import FunctionEntry
from tuner.hints import closest

REFERENCE = re.compile(r"[\w.]+:[\w.]+")
"""The form of a reference: ``package.module:function`` (or ``module:Class.method``)."""


def resolve_function(
    function: str | Callable[..., Any], search_path: tuple[str, ...]
) -> FunctionEntry:
    """Checks that a trial function can be imported and says where it comes from.

    The folders of ``search_path`` are on ``sys.path`` only for the check.

    Raises:
        ValueError: with what to fix, if the reference is malformed or cannot be imported.
    """
    if callable(function):
        named = function
        while isinstance(named, functools.partial):  # named after the function it wraps
            named = named.func
        module = getattr(named, "__module__", None) or "__main__"
        qualname = getattr(named, "__qualname__", getattr(named, "__name__", "function"))
        return FunctionEntry(f"{module}:{qualname}", search_path, function)
    if not isinstance(function, str) or not REFERENCE.fullmatch(function):
        raise ValueError(
            f"{function!r} is not a function reference; write it as `package.module:function`"
        )
    with _on_sys_path(search_path):
        _import(function, search_path)
    return FunctionEntry(function, search_path)


def is_made_in_place(ref: str) -> bool:
    """Whether the function ``ref`` names was made where it ran and cannot be imported by name
    elsewhere: a lambda or closure (``<lambda>``, ``f.<locals>.g``) or a function of
    ``__main__`` (a script's or a notebook's)."""
    return ref.startswith("__main__:") or "<" in ref


def is_referable(entry: FunctionEntry) -> bool:
    """Whether ``entry.ref`` imports as the entry's function itself, so a YAML spec can name it.

    Not so for a lambda, a closure, a ``functools.partial`` or a function of ``__main__`` (a
    script or a notebook): on a worker or in ``tuner resume`` they would not import.
    """
    if entry.function is None:
        return True
    if is_made_in_place(entry.ref):
        return False
    try:
        with _on_sys_path(entry.search_path):
            return _import(entry.ref, entry.search_path) is entry.function
    except ValueError:
        return False


def load_function(entry: FunctionEntry) -> Callable[[dict[str, Any]], Any]:
    """The callable behind ``entry``, where a trial runs.

    The search path stays on ``sys.path``: the function's module may import its neighbours
    when it runs.

    Raises:
        ValueError: as :func:`resolve_function` says it.
    """
    if entry.function is not None:
        return entry.function
    for path in reversed(entry.search_path):
        if path not in sys.path:
            sys.path.insert(0, path)
    return _import(entry.ref, entry.search_path)


def _import(reference: str, search_path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """Imports ``module:attr.path``, or raises a ValueError that says what to fix."""
    module_name, _, attr = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"cannot import module `{module_name}` ({exc}); it is looked up from "
            f"{', '.join(search_path) or 'sys.path'}: run tuner from the folder that holds the "
            "package, or fix the reference"
        ) from None
    except (Exception, SystemExit) as exc:  # the module's own top-level code failed
        raise ValueError(
            f"importing `{module_name}` raised {type(exc).__name__}: {exc}; fix the module "
            "(it runs when the study starts)"
        ) from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            members = [n for n, _ in inspect.getmembers(module, callable) if not n.startswith("_")]
            close = closest(part, members)
            hint = f" (did you mean `{module_name}:{close}`?)" if close else ""
            raise ValueError(f"module `{module_name}` has no function `{attr}`{hint}")
    if not callable(target):
        raise ValueError(f"`{reference}` is not callable")
    function: Callable[[dict[str, Any]], Any] = target
    return function


@contextmanager
def _on_sys_path(paths: tuple[str, ...]) -> Iterator[None]:
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)
