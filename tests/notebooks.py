"""Runs a Jupyter notebook end to end with a real kernel, as "Restart & Run All" would.

The kernel is always this interpreter (the project's virtualenv): its kernel spec is written
to a private folder for each run, so a ``python3`` kernel installed elsewhere on the machine
(``~/.local/share/jupyter``, another Python without tuner) is never picked up, and a fresh
machine needs no ``python -m ipykernel install``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def execute_notebook(
    path: str | os.PathLike[str],
    cwd: str | os.PathLike[str],
    timeout: float = 300.0,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Executes every cell of the notebook at ``path`` in a fresh kernel started in ``cwd``.

    Args:
        path: the ``.ipynb`` file; it is read, never written.
        cwd: the kernel's working directory (where the notebook's relative paths point).
        timeout: seconds one cell may run.
        env: extra environment variables for the kernel.

    Returns:
        The executed notebook (an ``nbformat.NotebookNode``), outputs filled in.

    Raises:
        nbclient.exceptions.CellExecutionError: naming the cell and its traceback, if a cell
            raised.
    """
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(os.fspath(path), as_version=4)
    with tempfile.TemporaryDirectory(prefix="tuner-kernels-") as kernels:
        spec_dir = Path(kernels, "python3")
        spec_dir.mkdir()
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 (tuner tests)",
                    "language": "python",
                }
            )
        )
        specs = KernelSpecManager(kernel_dirs=[kernels], ensure_native_kernel=False)
        manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
        client = NotebookClient(
            notebook,
            km=manager,
            timeout=int(timeout),
            resources={"metadata": {"path": os.fspath(cwd)}},
        )
        kernel_env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", **(env or {})}
        client.execute(env=kernel_env)
    return notebook


def outputs(notebook: Any, kind: str = "text/plain") -> list[str]:
    """Every output of ``kind`` (a MIME type, or ``stream`` for printed text), in cell order."""
    found: list[str] = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output.get("output_type") == "stream":
                found.append(output.get("text", ""))
            elif kind in output.get("data", {}):
                data = output["data"][kind]
                found.append(data if isinstance(data, str) else json.dumps(data))
    return found
