"""Finding execution backends by name, and checking a plug-in against the backend contract.

Backends are entry points of the ``tuner.backends`` group. Loading one checks everything that
can be checked without running it (:func:`backend_problems`), and every problem is reported
with the entry point that has it, so a plug-in author sees what to fix without a traceback.
"""

from __future__ import annotations

import inspect
import logging
from importlib import metadata
from typing import Any

from tuner.backend import (
    ENTRY_POINT_GROUP,
    Backend,
    BackendConfig,
    BackendContext,
    BackendPluginError,
    UnknownBackendError,
)

_log = logging.getLogger(__name__)


def available_backends() -> dict[str, metadata.EntryPoint]:
    """Every backend registered in the ``tuner.backends`` entry-point group, by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def backend_class(name: str) -> type[Any]:
    """The backend class registered as ``name``, checked against the :class:`Backend` contract.

    Raises:
        UnknownBackendError: if no such backend is registered.
        BackendPluginError: if its entry point does not import, or names something that is not
            a backend (the message lists every problem).
    """
    return _load(name)[1]


def create_backend(config: BackendConfig, context: BackendContext) -> Backend:
    """Builds the backend that ``config`` describes.

    Raises:
        UnknownBackendError: if no backend is registered as ``config.type``.
        BackendPluginError: if the plug-in breaks the contract (see :func:`backend_class`), or
            the backend it builds has no usable ``capacity``.
    """
    entry_point, cls = _load(config.type)
    backend: Backend = cls(config, context)
    problems = _instance_problems(backend)
    if problems:
        try:
            backend.close()
        except Exception:  # the contract error says more than a failing close
            _log.debug("closing the broken backend failed", exc_info=True)
        raise BackendPluginError(_plugin_message(entry_point, problems))
    return backend


def backend_problems(cls: object, name: str | None = None) -> list[str]:
    """What keeps ``cls`` from being a backend class (empty if nothing does).

    Checks what can be checked without building it: a ``name``, a ``Config`` that is a
    :class:`BackendConfig` (whose ``type`` defaults to ``name``, the entry point's name, when
    it has a default), each method of :class:`Backend` callable with the protocol's arguments,
    and a constructor that takes ``(config, context)``. What the backend *does* is checked by
    :class:`tuner.testing.backend_contract.BackendContract`.

    Args:
        cls: what an entry point named.
        name: the entry point's name, if it came from one.

    Returns:
        One sentence per problem, each saying what to change.
    """
    if not isinstance(cls, type):
        return [f"it is {type(cls).__name__} {cls!r}, not a class"]
    problems: list[str] = []
    backend_name = getattr(cls, "name", None)
    if backend_name is None:
        problems.append("the class has no `name` (a class attribute: the name in its handles)")
    elif not isinstance(backend_name, str) or not backend_name:
        problems.append(f"`name` is {backend_name!r}; make it a non-empty string")
    problems.extend(_config_problems(cls, name))
    for member, signature in _protocol_methods().items():
        problems.extend(_method_problems(cls, member, signature))
    if inspect.isfunction(inspect.getattr_static(cls, "capacity", None)):
        problems.append("`capacity` is a method; make it a property (add `@property`)")
    try:
        inspect.signature(cls).bind("config", "context")
    except TypeError:
        problems.append(
            f"`{cls.__name__}(config, context)` cannot be called: its signature is "
            f"{_signature_text(cls)}; take the backend's config and a BackendContext"
        )
    except ValueError:  # no signature to read (a C type): building it will tell
        pass
    return problems


def _load(name: str) -> tuple[metadata.EntryPoint, type[Any]]:
    backends = available_backends()
    if name not in backends:
        known = ", ".join(sorted(backends)) or "none"
        raise UnknownBackendError(
            f"no backend is registered as {name!r}; available backends: {known}"
        )
    entry_point = backends[name]
    try:
        loaded = entry_point.load()
    except Exception as exc:
        problem = f"importing it failed with {type(exc).__name__}: {exc}"
        raise BackendPluginError(_plugin_message(entry_point, [problem])) from exc
    problems = backend_problems(loaded, entry_point.name)
    if problems:
        raise BackendPluginError(_plugin_message(entry_point, problems))
    cls: type[Any] = loaded
    return entry_point, cls


def _plugin_message(entry_point: metadata.EntryPoint, problems: list[str]) -> str:
    return (
        f"entry point `{entry_point.name} = {entry_point.value}` (group "
        f"{entry_point.group or ENTRY_POINT_GROUP}): {'; '.join(problems)}. A backend keeps the "
        "tuner.backend.Backend protocol; tuner.testing.backend_contract.BackendContract tests one"
    )


def _config_problems(cls: type[Any], name: str | None) -> list[str]:
    config = getattr(cls, "Config", None)
    if config is None:
        return [
            "the class has no `Config` (a tuner.backend.BackendConfig subclass: the model of "
            "its `backend:` section)"
        ]
    if not (isinstance(config, type) and issubclass(config, BackendConfig)):
        return [f"`Config` is {config!r}; make it a subclass of tuner.backend.BackendConfig"]
    default = config.model_fields["type"].default
    if name is not None and isinstance(default, str) and default != name:
        return [
            f"`Config.type` defaults to {default!r} but the entry point is named {name!r}; "
            "the spec's `backend.type` picks the entry point, so they must be the same"
        ]
    return []


def _protocol_methods() -> dict[str, inspect.Signature]:
    """The methods :class:`Backend` declares, with their signatures."""
    return {
        member: inspect.signature(value)
        for member, value in vars(Backend).items()
        if not member.startswith("_") and inspect.isfunction(value)
    }


def _method_problems(cls: type[Any], member: str, wanted: inspect.Signature) -> list[str]:
    arguments = [p for p in wanted.parameters if p != "self"]
    call = f"{member}({', '.join(arguments)})"
    method = inspect.getattr_static(cls, member, None)
    if method is None:
        return [f"the class has no `{call}`"]
    if not callable(method):
        return [f"`{member}` is {type(method).__name__}, not a method `{call}`"]
    try:
        inspect.signature(getattr(cls, member)).bind("self", *arguments)
    except TypeError:
        return [
            f"`{member}` cannot be called as `{call}`: its signature is "
            f"{_signature_text(getattr(cls, member))}"
        ]
    except ValueError:
        pass
    return []


def _signature_text(target: Any) -> str:
    try:
        return str(inspect.signature(target))
    except (TypeError, ValueError):
        return "unknown"


def _instance_problems(backend: Any) -> list[str]:
    try:
        capacity = backend.capacity
    except AttributeError:
        return ["the backend it built has no `capacity`"]
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        return [f"the backend it built has capacity {capacity!r}; make it an int of at least 1"]
    return []
