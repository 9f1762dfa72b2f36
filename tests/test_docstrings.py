"""The ``>>>`` examples of the modules the Python API page renders run, and show what they say.

docs/reference/api.md renders objects with ``::: tuner.x.Name`` lines; every module that
defines one has its docstrings' examples run by :mod:`doctest`. A module must run at least
one example (a ``+SKIP`` one does not count), so the test cannot pass on a module without any;
a module that has none yet is listed in ``WITHOUT_EXAMPLES``, and is expected to fail until
it has one.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
from types import ModuleType

import pytest

from conftest import ROOT

API_PAGE = ROOT / "docs" / "reference" / "api.md"
WITHOUT_EXAMPLES = frozenset(
    {
        "tuner.backend",
        "tuner.errors",
        "tuner.locks",
        "tuner.records",
        "tuner.results",
        "tuner.spec.issues",
        "tuner.spec.loader",
        "tuner.spec.model",
        "tuner.store",
        "tuner.study",
    }
)
"""Rendered modules whose docstrings have no example that runs yet (STYLE.md: public classes
carry a small runnable example). Give one an example, and take it off this list."""


def _defining_module(name: str) -> ModuleType:
    """The module that defines ``name``, a dotted name as a ``:::`` line gives it."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        found: object = module
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return inspect.getmodule(found) or module
    raise LookupError(f"{API_PAGE.name} renders {name}, which does not import")


def rendered_modules() -> list[str]:
    """The modules that define what the API page renders, in the page's order."""
    names = re.findall(r"^:::\s*([\w.]+)", API_PAGE.read_text(encoding="utf-8"), re.MULTILINE)
    modules = [_defining_module(name).__name__ for name in names]
    return list(dict.fromkeys(modules))


MODULES = rendered_modules()


def test_the_api_page_renders_objects_of_several_modules() -> None:
    assert {"tuner", "tuner.space", "tuner.report"} <= set(MODULES)
    assert not WITHOUT_EXAMPLES - set(MODULES), "WITHOUT_EXAMPLES names a module not rendered"


def run_examples(name: str) -> tuple[int, int]:
    """Runs the examples of module ``name``: how many failed, how many ran."""
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    return result.failed, result.attempted


@pytest.mark.parametrize("name", [m for m in MODULES if m not in WITHOUT_EXAMPLES])
def test_the_examples_in_a_rendered_module_run(name: str) -> None:
    failed, attempted = run_examples(name)
    assert failed == 0, f"{failed} of {attempted} examples of {name} failed (printed above)"
    assert attempted > 0, f"{name} has no example that runs; give a public class one"


@pytest.mark.parametrize("name", sorted(WITHOUT_EXAMPLES))
def test_a_module_listed_without_examples_has_none(name: str) -> None:
    assert run_examples(name) == (0, 0), f"{name} has examples now: take it off WITHOUT_EXAMPLES"
