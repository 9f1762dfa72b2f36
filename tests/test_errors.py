"""One error hierarchy: what tuner raises on purpose is a TunerError with an exit code."""

from __future__ import annotations

import pytest

import tuner
from tuner.backend import BackendError, BackendPluginError, MissingExtraError, UnknownBackendError
from tuner.errors import ConflictError, InputError, SetupError, TunerError
from tuner.locks import StudyBusyError, StudyLockError, StudyLockLostError
from tuner.space import SpaceError
from tuner.spec import SpecError
from tuner.store import StorageError, StudyExistsError, StudyNotFoundError


@pytest.mark.parametrize(
    ("error", "base", "builtin", "code"),
    [
        (SpecError, InputError, ValueError, 2),
        (SpaceError, InputError, ValueError, 2),
        (StudyExistsError, InputError, Exception, 2),
        (StudyNotFoundError, InputError, LookupError, 2),
        (UnknownBackendError, InputError, LookupError, 2),
        (StudyBusyError, ConflictError, Exception, 1),
        (StudyLockLostError, ConflictError, Exception, 1),
        (StudyLockError, SetupError, Exception, 2),
        (BackendError, SetupError, RuntimeError, 2),
        (BackendPluginError, SetupError, Exception, 2),
        (MissingExtraError, SetupError, ImportError, 2),
        (StorageError, TunerError, Exception, 1),
    ],
)
def test_each_error_has_its_place_its_builtin_and_its_exit_code(
    error: type[Exception], base: type[Exception], builtin: type[Exception], code: int
) -> None:
    assert issubclass(error, base)
    assert issubclass(error, builtin)
    assert error.exit_code == code  # type: ignore[attr-defined]


def test_the_python_api_exports_the_hierarchy() -> None:
    assert tuner.TunerError is TunerError
    assert tuner.StudyBusyError is StudyBusyError
    assert {"TunerError", "InputError", "ConflictError", "SetupError"} <= set(tuner.__all__)
