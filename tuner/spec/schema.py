"""The JSON Schema of the spec, for editors (``tuner schema``)."""

from __future__ import annotations

from typing import Any

from tuner.plugins import available_backends, backend_class
from tuner.spec.model import StudySpec


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec, with every installed backend's options."""
    schema = StudySpec.model_json_schema()
    backends = []
    for name in sorted(available_backends()):
        try:
            config_model = backend_class(name).Config
        except Exception:  # a broken third-party plug-in must not hide the others
            continue
        sub = config_model.model_json_schema()
        schema.setdefault("$defs", {}).update(sub.pop("$defs", {}))
        backends.append(sub)
    if backends:
        schema["properties"]["backend"] = {"oneOf": backends}
    return schema
