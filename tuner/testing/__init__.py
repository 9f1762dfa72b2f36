"""Test suites that third-party code runs against itself, as optuna ships ``optuna.testing``.

:mod:`tuner.testing.backend_contract` holds ``BackendContract``, the pytest class every
execution backend's tests subclass. It needs pytest (the ``dev`` extra).
"""

from __future__ import annotations

try:
    import pytest
except ImportError:  # pragma: no cover - importing the suite itself says what to install
    pass
else:
    # Plain asserts in the suite explain themselves under pytest like those of a test module.
    pytest.register_assert_rewrite("tuner.testing.backend_contract")
