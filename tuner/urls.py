"""Checks of storage URLs and MLflow tracking URIs, made when a spec loads.

Nothing here connects anywhere or imports a database driver or MLflow: a URL that cannot work
is refused with what to write instead, before a study creates anything.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

# optuna's `get_storage` opens a URL as an SQLAlchemy database (RDBStorage); its Redis storage
# is gone since optuna 3.1. Dialect -> the pip package of each DBAPI driver it may use.
_RDB_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")


_DRIVERS: dict[str, tuple[str, str]] = {
    "pysqlite": ("sqlite3", "a Python built with sqlite3"),
    "psycopg": ("psycopg", "psycopg[binary]"),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "psycopg2cffi": ("psycopg2cffi", "psycopg2cffi"),
    "pg8000": ("pg8000", "pg8000"),
    "pymysql": ("pymysql", "PyMySQL"),
    "mysqldb": ("MySQLdb", "mysqlclient"),
    "mysqlconnector": ("mysql.connector", "mysql-connector-python"),
    "mariadbconnector": ("mariadb", "mariadb"),
    "cymysql": ("cymysql", "cymysql"),
    "oracledb": ("oracledb", "oracledb"),
    "cx_oracle": ("cx_Oracle", "cx-Oracle"),
    "pyodbc": ("pyodbc", "pyodbc"),
    "pymssql": ("pymssql", "pymssql"),
}


_SYNC_DRIVER_HINT = {
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "mssql": "mssql+pyodbc",
    "oracle": "oracle+oracledb",
    "sqlite": "sqlite",
}


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package of a dotted name
        return False


def database_url_problem(url: str, what: str, dialects: tuple[str, ...]) -> str | None:
    """What is wrong with an SQLAlchemy database URL, or ``None``; imports no DBAPI driver.

    Args:
        url: the URL, e.g. ``postgresql+psycopg2://user:pass@host/db``.
        what: what the URL is for, as the message calls it ("optuna storage URL").
        dialects: the database dialects that may be used.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    accepted = ", ".join(f"{d}://..." for d in dialects)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return f"not a valid {what}; write e.g. `sqlite:///studies.db` or `{accepted}`"
    backend = parsed.get_backend_name()
    if backend not in dialects:
        return f"`{backend}` is not a database a {what} can use; use one of: {accepted}"
    try:
        dialect = parsed.get_dialect()
    except (NoSuchModuleError, ArgumentError, ImportError):
        return (
            f"SQLAlchemy has no `{parsed.drivername}` driver; write `{backend}://...` or e.g. "
            f"`{_SYNC_DRIVER_HINT[backend]}://...`"
        )
    if getattr(dialect, "is_async", False):
        return (
            f"`{parsed.drivername}` is an asyncio driver, which optuna and MLflow cannot use; "
            f"use e.g. `{_SYNC_DRIVER_HINT[backend]}://...`"
        )
    driver = str(getattr(dialect, "driver", ""))
    module, package = _DRIVERS.get(driver, ("", ""))
    if module and not _module_available(module):
        alternative = ""
        if backend == "postgresql" and driver == "psycopg" and _module_available("psycopg2"):
            alternative = "; psycopg2 is installed: write `postgresql+psycopg2://...` to use it"
        return (
            f"the `{backend}` database driver `{driver}` (Python module `{module}`) is not "
            f"installed; install it with `pip install '{package}'`{alternative}"
        )
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            return (
                f"the folder `{folder}` of the SQLite database does not exist; create it or "
                "fix the path (`sqlite:///relative.db`, `sqlite:////absolute/path.db`)"
            )
    return None


def storage_url_problem(url: str) -> str | None:
    """What is wrong with an optuna storage URL (``storage.url``), or ``None``."""
    return database_url_problem(url, "optuna storage URL", _RDB_DIALECTS)


_MLFLOW_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


_MLFLOW_NAMED_URIS = ("databricks", "databricks-uc", "uc")


_MLFLOW_SCHEMES = ("file", "http", "https", "databricks", "databricks-uc", "uc")


_SAGEMAKER_ARN = re.compile(
    r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-tracking-server/[A-Za-z0-9][A-Za-z0-9-]*"
)


def tracking_uri_problem(uri: str) -> str | None:
    """What is wrong with an MLflow tracking URI, or ``None``; never imports MLflow.

    Accepted: what MLflow 3's tracking store registry serves (local paths and ``file:``,
    ``sqlite``/``postgresql``/``mysql``/``mssql`` databases, ``http(s)://``, ``databricks``,
    ``databricks://profile``, ``databricks-uc``, ``uc:``), SageMaker MLflow tracking-server
    ARNs, and every scheme registered in the ``mlflow.tracking_store`` entry-point group.
    """
    plugins = sorted(ep.name for ep in metadata.entry_points(group="mlflow.tracking_store"))
    accepted = (
        "a folder or `file:` URI, `sqlite:///mlflow.db`, `postgresql://...`, `mysql://...`, "
        "`mssql://...`, `http(s)://host:port`, `databricks`, `databricks://PROFILE`, "
        "`databricks-uc`, `uc:...`, "
        "`arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME`"
        + "".join(f", `{name}:...`" for name in plugins)
    )
    text = uri.strip()
    if not text:
        return "the tracking URI is empty; remove `tracking_uri` to use MLflow's default"
    if text in _MLFLOW_NAMED_URIS:
        return None
    if text.startswith("arn:"):
        if _SAGEMAKER_ARN.fullmatch(text):
            return None
        return (
            "not a SageMaker MLflow tracking server ARN; write "
            "`arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME`"
        )
    try:
        parsed = urlparse(text)
    except ValueError as exc:
        return f"not a URI ({exc}); use one of: {accepted}"
    scheme = parsed.scheme.lower()
    if scheme == "" or len(scheme) == 1:  # a path (or a Windows drive letter)
        return None
    database = scheme.split("+", 1)[0]
    if database in _MLFLOW_DATABASES:
        return database_url_problem(text, "MLflow tracking database URI", _MLFLOW_DATABASES)
    if scheme in ("http", "https") and not parsed.netloc:
        return f"`{text}` names no server; write e.g. `{scheme}://mlflow.example.com:5000`"
    if scheme in _MLFLOW_SCHEMES or scheme in plugins:
        return None
    return f"MLflow cannot track to `{scheme}:` URIs; use one of: {accepted}"
