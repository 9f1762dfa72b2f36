"""Keeping secrets out of everything tuner shows or logs.

An environment variable whose name looks like a secret (``WANDB_API_KEY``, ``HF_TOKEN``,
``DB_PASSWORD``) reaches the trial unchanged, but MLflow, the console, the tracking journal and
``tuner status`` only ever see it masked::

    >>> redact({"HF_TOKEN": "hf_abc", "SEED": "1"})
    {'HF_TOKEN': '****', 'SEED': '1'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "****"
"""What a secret is shown as."""

SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
"""A name holding any of these (in any case) names a secret."""

ENV_KEYS = frozenset({"env", "environment"})
"""Spec keys whose mappings are environment variables (``trial.env``, a backend's
``environment``)."""

URL_KEYS = frozenset({"url", "tracking_uri"})
"""Spec keys whose values are URLs that may hold a password (``storage.url``)."""

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]+(?=@)")


def is_secret_name(name: object) -> bool:
    """Whether ``name`` looks like the name of a secret (``WANDB_API_KEY``, ``HF_TOKEN``).

    Example:
        >>> is_secret_name("wandb_api_key"), is_secret_name("OMP_NUM_THREADS")
        (True, False)
    """
    upper = str(name).upper()
    return any(word in upper for word in SECRET_WORDS)


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` with the values of secret-named keys replaced by ``****``."""
    return {key: MASK if is_secret_name(key) else value for key, value in mapping.items()}


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part masked.

    Example:
        >>> redact_url("postgresql://tuner:hunter2@db:5432/studies")
        'postgresql://tuner:****@db:5432/studies'
    """
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url)


def redact_spec(data: Any) -> Any:
    """A copy of a spec's plain data (dicts and lists) safe to show or log.

    Every ``env``/``environment`` mapping has its secret-named values masked, any value under a
    secret-named key is masked, and passwords in ``url``/``tracking_uri`` values are masked.
    """
    if isinstance(data, Mapping):
        result: dict[Any, Any] = {}
        for key, value in data.items():
            if is_secret_name(key) and not isinstance(value, Mapping | list):
                result[key] = MASK
            elif key in ENV_KEYS and isinstance(value, Mapping):
                result[key] = {
                    k: MASK if is_secret_name(k) else redact_spec(v) for k, v in value.items()
                }
            elif key in URL_KEYS and isinstance(value, str):
                result[key] = redact_url(value)
            else:
                result[key] = redact_spec(value)
        return result
    if isinstance(data, list | tuple):
        return [redact_spec(item) for item in data]
    return data


__all__ = ["MASK", "is_secret_name", "redact", "redact_spec", "redact_url"]
