"""Every "install X" hint names something that installs it."""

from __future__ import annotations

import ast
import tomllib

from conftest import ROOT
from tuner.backend import MissingExtraError


def _hints() -> list[tuple[str, str, str | None]]:
    """(file, package, extra) of every MissingExtraError raised in the code."""
    found = []
    for path in [*ROOT.joinpath("tuner").rglob("*.py"), *ROOT.joinpath("backends").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "MissingExtraError"
            ):
                package, extra = (ast.literal_eval(arg) for arg in node.args[:2])
                found.append((str(path.relative_to(ROOT)), package, extra))
    return found


def test_every_install_hint_names_an_extra_that_installs_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    core = " ".join(project["dependencies"])
    hints = _hints()
    assert len(hints) >= 3
    for where, package, extra in hints:
        if extra is None:
            assert package in core, f"{where}: `{package}` is not a dependency of tuner"
        else:
            assert extra in extras, f"{where}: the extra `{extra}` does not exist"
            assert any(package in requirement for requirement in extras[extra]), (
                f"{where}: the extra `{extra}` does not install `{package}`"
            )


def test_a_missing_core_dependency_says_to_reinstall_not_to_add_an_extra() -> None:
    message = str(MissingExtraError("ray", None, "the Ray backend"))
    assert "[" not in message
    assert "pip install --force-reinstall hpo-tuner" in message
