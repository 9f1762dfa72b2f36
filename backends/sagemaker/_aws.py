"""boto3, imported when a backend is built, and what AWS's errors say."""

from __future__ import annotations

from typing import Any

from tuner.backend import MissingExtraError


def import_boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise MissingExtraError("boto3", "sagemaker", "the SageMaker backend") from None
    return boto3


def error_code(exc: Exception) -> str:
    """The AWS error code of ``exc`` (``ValidationException``, ...), or ``""``."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def unanswered(exc: Exception) -> bool:
    """Whether a call failed without an answer (the request may have got through)."""
    from botocore.exceptions import BotoCoreError

    return isinstance(exc, BotoCoreError)
