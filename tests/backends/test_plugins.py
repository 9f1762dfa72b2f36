"""Backends are plug-ins: loading one checks it against the contract and names what is wrong.

Each test registers its plug-in through a real entry point: a module and a ``dist-info`` folder
in a temporary folder put on ``sys.path``, as an installed third-party package would be.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tuner.backend import (
    BackendContext,
    BackendError,
    BackendPluginError,
    MissingExtraError,
    UnknownBackendError,
)
from tuner.errors import InputError, SetupError, TunerError
from tuner.plugins import available_backends, backend_class, create_backend

GOOD = """
from typing import ClassVar, Literal

from tuner.backend import BackendConfig


class SlurmConfig(BackendConfig):
    type: Literal["slurm"] = "slurm"
    capacity: int = 2


class SlurmBackend:
    name: ClassVar[str] = "slurm"
    Config = SlurmConfig

    def __init__(self, config, context):
        self.config = config
        self.closed = False

    @property
    def capacity(self):
        return self.config.capacity

    def submit(self, trial): ...
    def poll(self, timeout): return []
    def cancel(self, handle): ...
    def reattach(self, handle): return False
    def close(self): self.closed = True
"""

Register = Callable[..., str]


@pytest.fixture
def register(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Register]:
    """Registers ``source`` as the module behind entry point ``name = <module>:<attr>``."""
    site = tmp_path / "site"
    site.mkdir()
    modules: list[str] = []

    def add(name: str, source: str, attr: str = "SlurmBackend", module: str = "") -> str:
        module = module or f"tuner_test_plugin_{name.replace('-', '_')}"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        dist = site / f"tuner_test_plugin_{len(modules)}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: tuner-test-plugin-{len(modules)}\nVersion: 1.0\n"
        )
        value = f"{module}:{attr}"
        (dist / "entry_points.txt").write_text(f"[tuner.backends]\n{name} = {value}\n")
        modules.append(module)
        importlib.invalidate_caches()  # importlib.metadata caches what each folder holds
        return value

    monkeypatch.syspath_prepend(str(site))
    yield add
    for module in modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def _context(tmp_path: Path) -> BackendContext:
    return BackendContext("plugins", tmp_path, max_concurrent=2)


def test_a_plugin_that_keeps_the_contract_is_loaded_and_built(
    register: Register, tmp_path: Path
) -> None:
    register("slurm", GOOD)
    cls = backend_class("slurm")
    backend = create_backend(cls.Config(), _context(tmp_path))
    assert backend.capacity == 2
    assert "slurm" in available_backends()


def test_a_plugin_without_config_is_named_with_what_is_missing(register: Register) -> None:
    value = register("slurm", GOOD.replace("    Config = SlurmConfig\n", ""))
    with pytest.raises(BackendPluginError) as caught:
        backend_class("slurm")
    message = str(caught.value)
    assert message.startswith(f"entry point `slurm = {value}` (group tuner.backends): ")
    assert "the class has no `Config`" in message
    assert isinstance(caught.value, SetupError)


def test_every_problem_of_a_plugin_is_listed_with_the_fix(register: Register) -> None:
    broken = (
        GOOD.replace('    name: ClassVar[str] = "slurm"\n', "")
        .replace("    Config = SlurmConfig\n", "    Config = dict\n")
        .replace("    def poll(self, timeout): return []\n", "    def poll(self): return []\n")
        .replace("    def close(self): self.closed = True\n", "")
        .replace("    @property\n", "")
        .replace("def __init__(self, config, context):", "def __init__(self, config):")
    )
    register("slurm", broken)
    with pytest.raises(BackendPluginError) as caught:
        backend_class("slurm")
    message = str(caught.value)
    for problem in (
        "the class has no `name`",
        "`Config` is <class 'dict'>; make it a subclass of tuner.backend.BackendConfig",
        "`poll` cannot be called as `poll(timeout)`: its signature is (self)",
        "the class has no `close()`",
        "`capacity` is a method; make it a property",
        "`SlurmBackend(config, context)` cannot be called: its signature is (config)",
    ):
        assert problem in message
    assert "submit" not in message  # what is right is not reported


def test_a_plugin_that_fails_to_import_is_reported_like_a_broken_one(register: Register) -> None:
    value = register("slurm", "import slurm_sdk_that_is_not_installed\n" + GOOD)
    with pytest.raises(BackendPluginError) as caught:
        backend_class("slurm")
    message = str(caught.value)
    assert f"entry point `slurm = {value}` (group tuner.backends)" in message
    assert "importing it failed with ModuleNotFoundError" in message
    assert "slurm_sdk_that_is_not_installed" in message
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_an_entry_point_naming_nothing_in_its_module_is_reported(register: Register) -> None:
    register("slurm", GOOD, attr="SlurmBackendd")
    with pytest.raises(BackendPluginError, match=r"importing it failed with AttributeError"):
        backend_class("slurm")


def test_an_entry_point_naming_an_instance_not_a_class_is_reported(register: Register) -> None:
    register("slurm", GOOD + "\nbackend = SlurmBackend(None, None)\n", attr="backend")
    with pytest.raises(BackendPluginError, match=r"it is SlurmBackend <.*>, not a class"):
        backend_class("slurm")


def test_a_config_type_that_is_not_the_entry_point_name_is_refused(register: Register) -> None:
    register("slurm-ng", GOOD)
    with pytest.raises(BackendPluginError) as caught:
        backend_class("slurm-ng")
    assert "`Config.type` defaults to 'slurm' but the entry point is named 'slurm-ng'" in str(
        caught.value
    )


def test_a_backend_built_without_capacity_is_closed_and_refused(
    register: Register, tmp_path: Path
) -> None:
    register("slurm", GOOD.replace("    capacity: int = 2", "    capacity: int = 0"))
    cls = backend_class("slurm")  # capacity is only known once the backend is built
    with pytest.raises(BackendPluginError, match="capacity 0; make it an int of at least 1"):
        create_backend(cls.Config(), _context(tmp_path))


def test_a_spec_naming_a_broken_plugin_says_what_is_wrong_with_it(register: Register) -> None:
    from tuner.spec import load_spec_text

    register("slurm", GOOD.replace("    Config = SlurmConfig\n", ""))
    text = textwrap.dedent(
        """\
        name: s
        objective: {metric: loss}
        space: {x: {type: float, low: 0, high: 1}}
        trial: {function: examples.functions:quadratic}
        backend: {type: slurm}
        """
    )
    with pytest.raises(BackendPluginError, match="the class has no `Config`"):
        load_spec_text(text, "study.yaml")


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(UnknownBackendError, match=r"no backend is registered as 'slurm'.*ray"):
        backend_class("slurm")


def test_backend_errors_sit_under_tuners_error_classes() -> None:
    assert issubclass(UnknownBackendError, InputError)
    assert issubclass(UnknownBackendError, LookupError)
    assert issubclass(BackendError, SetupError)
    assert issubclass(BackendPluginError, SetupError)
    error = MissingExtraError("boto3", "sagemaker", "the SageMaker backend")
    assert isinstance(error, SetupError)
    assert isinstance(error, ImportError)
    assert isinstance(error, TunerError)


@pytest.mark.parametrize("name", sorted(available_backends()))
def test_every_installed_backend_keeps_the_declared_contract(name: str) -> None:
    assert backend_class(name).name
