"""Bad input of every kind, through the real CLI: a clear error, exit code 2, nothing created.

Each generated case runs ``tuner validate`` or ``tuner run`` in process in a fresh folder and
checks the whole contract: exit code 2, no traceback, the file (and the line, where the input
has one) named, one paragraph per problem, and an empty folder afterwards but for the input.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tuner.cli import app
from tuner.spec import MAX_INT, MAX_SPEC_BYTES, SpecError, load_spec
from tuner.store import find_spec

runner = CliRunner()

SPEC = textwrap.dedent(
    """\
    name: bad-input
    objective: {metric: loss, direction: minimize}
    space:
      x: {type: float, low: -2.0, high: 2.0}
      k: {type: categorical, choices: [a, b]}
      n: {type: int, low: 1, high: 8, when: {k: b}}
    strategy: {type: random, seed: 1}
    budget: {max_trials: 2, max_concurrent: 1}
    trial: {function: examples.functions:quadratic}
    backend: {type: inprocess}
    tracking: {mlflow: null}
    """
)
BASE: dict[str, Any] = yaml.safe_load(SPEC)
FILE = "study.yaml"

FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def fresh_folder() -> Iterator[Path]:
    """A new empty folder as the working directory (hypothesis cases share no tmp_path)."""
    with tempfile.TemporaryDirectory(prefix="tuner-bad-") as folder, contextlib.chdir(folder):
        yield Path(folder)


@dataclass(frozen=True)
class Outcome:
    code: int
    output: str
    exception: BaseException | None


def tuner(*args: str) -> Outcome:
    result = runner.invoke(app, list(args), env={"COLUMNS": "120"})
    return Outcome(result.exit_code, result.output, result.exception)


def assert_refused(outcome: Outcome, folder: Path, *, keep: set[str], file: str | None) -> None:
    """The contract every piece of bad input is held to."""
    assert outcome.code == 2, outcome.output
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), outcome
    assert "Traceback" not in outcome.output
    assert outcome.output.strip(), "the error says nothing"
    assert "\n\n" not in outcome.output.strip(), "one paragraph per problem, no blank lines"
    assert {p.name for p in folder.iterdir()} == keep, "bad input created something"
    if file is not None:
        assert file in outcome.output


def assert_issues(outcome: Outcome, *, with_line: bool) -> list[str]:
    """A header naming the file and problem count, then one ``file[:line:col]:`` line each."""
    header, *issues = outcome.output.strip().splitlines()
    count = int(re.search(r": (\d+) problems? in the spec", header).group(1))  # type: ignore[union-attr]
    assert header.startswith(FILE)
    assert len(issues) == count, outcome.output
    for issue in issues:
        assert issue.startswith(f"  {FILE}"), issue
        if with_line:
            assert re.match(rf"  {re.escape(FILE)}:\d+:\d+: ", issue), issue
        assert not issue.rstrip().endswith("got None"), issue
    return issues


def check_spec_bytes(raw: bytes, *, command: str = "validate", with_line: bool = True) -> str:
    with fresh_folder() as folder:
        (folder / FILE).write_bytes(raw)
        outcome = tuner(command, FILE)
        assert_refused(outcome, folder, keep={FILE}, file=FILE)
        assert_issues(outcome, with_line=with_line)
        return outcome.output


def check_spec(data: Any, *, command: str = "validate") -> str:
    return check_spec_bytes(yaml.safe_dump(data, sort_keys=False).encode(), command=command)


def valid_yaml_fails(text: str) -> bool:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        return True
    return False


# --- generated cases -------------------------------------------------------------------------

_SECTIONS = ["name", "objective", "space", "strategy", "budget", "trial", "backend", "tracking"]
_wrong_values = st.one_of(
    st.integers(-3, 3),
    st.booleans(),
    st.text(max_size=6),
    st.lists(st.integers(0, 3), max_size=3),
    st.just({"nope": 1}),
)


@st.composite
def wrong_type_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A required or typed field given a value of the wrong type."""
    data = yaml.safe_load(SPEC)
    path = draw(
        st.sampled_from(
            [
                ("objective",),
                ("objective", "direction"),
                ("space",),
                ("space", "x"),
                ("space", "x", "low"),
                ("space", "k", "choices"),
                ("space", "n", "when"),
                ("strategy",),
                ("strategy", "type"),
                ("budget",),
                ("budget", "max_trials"),
                ("budget", "max_concurrent"),
                ("trial",),
                ("trial", "function"),
                ("backend",),
                ("backend", "type"),
                ("tracking",),
            ]
        )
    )
    value = draw(_wrong_values)
    node = data
    for key in path[:-1]:
        node = node[key]
    # a value that happens to be valid for the field is no test of bad input
    assume(not (path == ("budget", "max_trials") and isinstance(value, int) and value > 0))
    assume(not (path == ("budget", "max_concurrent") and isinstance(value, int) and value > 0))
    assume(not (path == ("space", "x", "low") and isinstance(value, int) and value < 2))
    assume(path != ("space", "n", "when") or not isinstance(value, dict))
    node[path[-1]] = value
    return data


@st.composite
def unknown_key_specs(draw: st.DrawFn) -> dict[str, Any]:
    data = yaml.safe_load(SPEC)
    where = draw(st.sampled_from([(), ("objective",), ("budget",), ("space", "x"), ("trial",)]))
    node = data
    for key in where:
        node = node[key]
    key = draw(st.from_regex(r"[a-z][a-z_]{2,10}", fullmatch=True))
    assume(key not in node and key not in {"type", "when"} and key not in _KNOWN_KEYS)
    node[key] = draw(_wrong_values)
    return data


_KNOWN_KEYS = {
    "name", "objective", "space", "strategy", "budget", "pruner", "trial", "backend", "tracking",
    "storage", "metric", "direction", "max_trials", "max_concurrent", "max_time", "max_failures",
    "max_cost", "path", "function", "command", "metric_definitions", "workdir", "resources",
    "env", "timeout", "max_retries", "retry_on_error", "low", "high", "log", "step",
}  # fmt: skip


@settings(FUZZ, max_examples=200)
@given(st.one_of(wrong_type_specs(), unknown_key_specs()))
def test_wrong_types_and_unknown_keys_are_refused_with_their_line(data: dict[str, Any]) -> None:
    check_spec(data)


_BREAKERS = ["{", "[", "]", "*nosuch", "@x", "`x", "\t", "%YAML 1.1", "!!python/name:os.system"]


@settings(FUZZ, max_examples=100)
@given(st.integers(0, SPEC.count("\n") - 1), st.sampled_from(_BREAKERS), st.integers(0, 30))
def test_broken_yaml_points_at_its_line(line: int, breaker: str, column: int) -> None:
    lines = SPEC.splitlines()
    at = min(column, len(lines[line]))
    lines[line] = lines[line][:at] + breaker + lines[line][at:]
    text = "\n".join(lines) + "\n"
    assume(valid_yaml_fails(text))
    output = check_spec_bytes(text.encode())
    assert "invalid YAML" in output


_NOT_UTF8 = [b"\xff", b"\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]


@settings(FUZZ, max_examples=100)
@given(st.integers(0, len(SPEC)), st.sampled_from(_NOT_UTF8), st.sampled_from(["validate", "run"]))
def test_bytes_that_are_not_utf8_are_located(offset: int, bad: bytes, command: str) -> None:
    raw = SPEC.encode()
    raw = raw[:offset] + bad + raw[offset:]
    output = check_spec_bytes(raw, command=command)
    line = raw[:offset].count(b"\n") + 1
    assert f"at offset {offset}" in output
    assert f"{FILE}:{line}:" in output
    assert "save the file as UTF-8" in output


_numbers_path = st.sampled_from(
    [
        ("space", "x", "low"),
        ("space", "x", "high"),
        ("space", "n", "low"),
        ("space", "n", "high"),
        ("budget", "max_trials"),
        ("budget", "max_concurrent"),
        ("budget", "max_failures"),
        ("trial", "max_retries"),
    ]
)
_unusable_numbers = st.one_of(
    st.integers(min_value=MAX_INT + 1, max_value=10**40),
    st.integers(min_value=-(10**40), max_value=-MAX_INT - 1),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


@settings(FUZZ, max_examples=100)
@given(_numbers_path, _unusable_numbers, st.sampled_from(["validate", "run"]))
def test_huge_and_nan_numbers_are_refused(path: tuple[str, ...], number: Any, command: str) -> None:
    data = yaml.safe_load(SPEC)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = number
    output = check_spec(data, command=command)
    assert ".".join(path) in output


_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def bad_spaces(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    data = yaml.safe_load(SPEC)
    names = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    kind = draw(st.sampled_from(["empty", "missing", "later", "null"]))
    space: dict[str, Any] = {n: {"type": "categorical", "choices": ["a", "b"]} for n in names}
    if kind == "empty":
        space = {}
    elif kind == "null":
        space = None  # type: ignore[assignment]
    elif kind == "missing":
        ghost = draw(_names.filter(lambda n: n not in names))
        space[names[-1]] = {"type": "float", "low": 0.0, "high": 1.0, "when": {ghost: "a"}}
    else:
        first = {"type": "int", "low": 0, "high": 3, "when": {names[-1]: "a"}}
        space = {"zz_first": first, **space}
    data["space"] = space
    expected = {"empty": "empty", "null": "space", "missing": "not a parameter", "later": "after"}
    return data, expected[kind]


@settings(FUZZ, max_examples=80)
@given(bad_spaces())
def test_empty_spaces_and_conditions_on_missing_or_later_parameters(
    case: tuple[dict[str, Any], str],
) -> None:
    data, expected = case
    assert expected in check_spec(data)


@settings(FUZZ, max_examples=60)
@given(st.integers(0, SPEC.count("\n") - 1), st.sampled_from(["validate", "run"]))
def test_duplicate_keys_are_refused_at_the_second_one(line: int, command: str) -> None:
    lines = SPEC.splitlines()
    assume(not lines[line].startswith(" "))  # a top-level section given twice
    text = SPEC + lines[line] + "\n"
    output = check_spec_bytes(text.encode(), command=command)
    assert f"{FILE}:{len(lines) + 1}:1:" in output
    assert "given twice" in output


@settings(FUZZ, max_examples=60)
@given(
    st.one_of(
        st.lists(st.integers(-9, 9), min_size=1, max_size=3),
        st.integers(-1000, 1000),
        st.text(min_size=1, max_size=10).filter(lambda t: t.strip() and ":" not in t),
    ),
    st.sampled_from([(), ("objective",), ("budget",), ("trial",), ("space", "x")]),
)
def test_non_mappings_where_mappings_go(value: Any, where: tuple[str, ...]) -> None:
    data: Any = yaml.safe_load(SPEC)
    if where:
        node = data
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
    else:
        data = value
    text = yaml.safe_dump(data)
    assume(not isinstance(yaml.safe_load(text), dict) or where)
    output = check_spec_bytes(text.encode())
    assert "mapping" in output or "type" in output


_bad_options = st.one_of(
    st.tuples(
        st.sampled_from(["--max-trials", "--max-concurrent"]),
        st.one_of(
            st.integers(max_value=0),
            st.integers(min_value=MAX_INT + 1, max_value=10**30),
            st.from_regex(r"[a-z.]{1,6}", fullmatch=True),
        ).map(str),
    ),
    st.tuples(st.from_regex(r"--[a-z]{3,10}", fullmatch=True).filter(lambda o: o != "--help")),
)


@settings(FUZZ, max_examples=100)
@given(_bad_options, st.sampled_from(["run", "resume"]))
def test_bad_command_line_options_are_one_paragraph(option: tuple[str, ...], command: str) -> None:
    assume(option[0] not in {"--overwrite", "--dry-run"})
    with fresh_folder() as folder:
        (folder / FILE).write_text(SPEC)
        target = FILE if command == "run" else "bad-input"
        outcome = tuner(command, target, *option)
        assert_refused(outcome, folder, keep={FILE}, file=None)
        assert outcome.output.startswith("error:")
        assert len(outcome.output.strip().splitlines()) == 1


@settings(FUZZ, max_examples=50)
@given(
    st.sampled_from(["run", "validate", "status", "best", "resume", "sync"]),
    st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=20).filter(
        lambda t: not t.startswith("-") and t.strip() not in {"", "."}
    ),
)
def test_missing_specs_and_studies_are_named(command: str, name: str) -> None:
    with fresh_folder() as folder:
        outcome = tuner(command, name)
        assert_refused(outcome, folder, keep=set(), file=None)
        assert len(outcome.output.strip().splitlines()) <= 2


_unsupported_schemes = st.one_of(
    st.sampled_from(["ftp", "redis", "mongodb", "s3", "gs", "ssh", "hdfs", "wasbs", "dbfs"]),
    st.from_regex(r"[a-z]{2,8}", fullmatch=True).filter(
        lambda s: (
            not s.startswith(("sqlite", "postgres", "mysql", "mssql", "oracle", "maria"))
            and s not in {"file", "http", "https", "databricks", "uc"}
        )
    ),
)
_missing_drivers = st.sampled_from(
    [
        "mysql://u:pw@db/studies",
        "mysql+mysqldb://db/studies",
        "mysql+mysqlconnector://db/studies",
        "mariadb://db/studies",
        "oracle+oracledb://db/studies",
        "mssql+pymssql://db/studies",
        "mssql+pyodbc://db/studies",
        "postgresql+pg8000://db/studies",
        "postgresql+asyncpg://db/studies",
        "sqlite+aiosqlite:///x.db",
        "mysql+nosuchdriver://db/studies",
        "sqlite:///no/such/folder/x.db",
    ]
)
_storage_urls = st.one_of(
    _missing_drivers,
    st.tuples(_unsupported_schemes, st.from_regex(r"[a-z0-9/.@:]{0,20}", fullmatch=True)).map(
        lambda t: f"{t[0]}://{t[1]}"
    ),
    st.text(max_size=30).filter(lambda t: "://" not in t),
)
_tracking_uris = st.one_of(
    _missing_drivers.filter(lambda u: u.split(":")[0].split("+")[0] != "oracle"),
    st.tuples(_unsupported_schemes, st.from_regex(r"[a-z0-9/.]{0,20}", fullmatch=True)).map(
        lambda t: f"{t[0]}://{t[1]}"
    ),
    st.sampled_from(["http://", "https:///path", "arn:aws:s3:::bucket", "", "   "]),
)


@settings(FUZZ, max_examples=120)
@given(_storage_urls, st.sampled_from(["validate", "run"]))
def test_unusable_storage_urls_are_refused_before_anything_is_created(
    url: str, command: str
) -> None:
    data = {**BASE, "storage": {"url": url}}
    output = check_spec(data, command=command)
    assert "storage.url" in output
    if "pw" in url:
        assert "pw@" not in output


@settings(FUZZ, max_examples=120)
@given(_tracking_uris, st.sampled_from(["validate", "run"]))
def test_unusable_tracking_uris_are_refused_before_anything_is_created(
    uri: str, command: str
) -> None:
    data = {**BASE, "tracking": {"mlflow": {"tracking_uri": uri}}}
    output = check_spec(data, command=command)
    assert "tracking.mlflow.tracking_uri" in output


# --- regressions -----------------------------------------------------------------------------


def test_a_spec_that_is_not_utf8_is_an_issue_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(SPEC.encode().replace(b"bad-input", b"bad-\xe9input"))
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / FILE)
    (issue,) = caught.value.issues
    assert (issue.line, issue.column) == (1, 11)
    assert "not UTF-8 text (byte 0xe9 at offset 10); save the file as UTF-8" in issue.message


def test_a_missing_database_driver_is_caught_by_validate_and_run(tmp_path: Path) -> None:
    (tmp_path / FILE).write_text(SPEC + "storage: {url: 'mysql://tuner:pw@db/studies'}\n")
    for command in ("validate", "run"):
        outcome = tuner(command, FILE)
        assert_refused(outcome, tmp_path, keep={FILE}, file=FILE)
        assert f"{FILE}:12:" in outcome.output
        assert "pip install 'mysqlclient'" in outcome.output


def test_an_unsupported_tracking_uri_is_caught_by_validate_and_run(tmp_path: Path) -> None:
    text = SPEC.replace("tracking: {mlflow: null}", "tracking: {mlflow: {tracking_uri: 'ftp://x'}}")
    (tmp_path / FILE).write_text(text)
    for command in ("validate", "run"):
        outcome = tuner(command, FILE)
        assert_refused(outcome, tmp_path, keep={FILE}, file=FILE)
        assert f"{FILE}:11:" in outcome.output
        assert "MLflow cannot track to `ftp:` URIs" in outcome.output


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///mlflow.db",
        "mlruns",
        "file:///tmp/mlruns",
        "http://localhost:5000",
        "https://mlflow.example.com",
        "databricks",
        "databricks://my-profile",
        "databricks-uc",
        "uc:databricks-uc",
        "postgresql+psycopg2://u:p@db/mlflow",
        "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/my-server",
    ],
)
def test_every_tracking_uri_mlflow_serves_is_accepted(uri: str, tmp_path: Path) -> None:
    text = SPEC.replace("{mlflow: null}", f"{{mlflow: {{tracking_uri: '{uri}'}}}}")
    (tmp_path / FILE).write_text(text)
    outcome = tuner("validate", FILE)
    assert outcome.code == 0, outcome.output


@pytest.mark.parametrize("size", [8_000_000, 10_000_000])
def test_a_huge_spec_is_refused_at_once(size: int, tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(SPEC.encode() + b"#" * size + b"\n")
    started = time.monotonic()
    outcome = tuner("validate", FILE)
    assert time.monotonic() - started < 5
    assert_refused(outcome, tmp_path, keep={FILE}, file=FILE)
    assert f"more than the {MAX_SPEC_BYTES:,}" in outcome.output
    assert "data belongs in files" in outcome.output


def test_aliases_that_expand_beyond_reason_are_refused(tmp_path: Path) -> None:
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        bomb.append(f"{level}: &{level} [{', '.join([f'*{previous}'] * 10)}]")
    (tmp_path / FILE).write_text(SPEC + "\n".join(bomb).replace("a:", "aa:", 1) + "\n")
    started = time.monotonic()
    outcome = tuner("validate", FILE)
    assert time.monotonic() - started < 10
    assert_refused(outcome, tmp_path, keep={FILE}, file=FILE)
    assert "expands to more than" in outcome.output


def test_an_import_failure_and_a_bad_budget_are_both_reported(tmp_path: Path) -> None:
    text = SPEC.replace("examples.functions:quadratic", "gone.module:train").replace(
        "max_trials: 2", "max_trials: 0"
    )
    (tmp_path / FILE).write_text(text)
    outcome = tuner("validate", FILE)
    assert_refused(outcome, tmp_path, keep={FILE}, file=FILE)
    issues = assert_issues(outcome, with_line=True)
    assert len(issues) == 2
    assert "budget.max_trials" in issues[0]
    assert "trial.function: cannot import module `gone.module`" in issues[1]


def test_whole_spec_checks_are_reported_with_an_import_failure(tmp_path: Path) -> None:
    text = SPEC.replace("examples.functions:quadratic", "gone.module:train").replace(
        "max_trials: 2, ", ""
    )
    (tmp_path / FILE).write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / FILE)
    assert {i.field for i in caught.value.issues} == {"budget", "trial.function"}


def test_custom_messages_end_without_a_stray_got_none(tmp_path: Path) -> None:
    (tmp_path / FILE).write_text(SPEC.replace("when: {k: b}", "when: {kk: b}"))
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / FILE)
    (issue,) = caught.value.issues
    assert issue.message.endswith("known parameters: x, k, n")


def test_reading_a_study_never_imports_its_trial_code(tmp_path: Path) -> None:
    (tmp_path / "noisy.py").write_text(
        "import pathlib\npathlib.Path('imported').touch()\ndef train(p):\n    return 1.0\n"
    )
    folder = tmp_path / "tuner-studies" / "bad-input"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(SPEC.replace("examples.functions:quadratic", "noisy:train"))
    spec = find_spec("bad-input")
    assert spec.trial.entry.ref == "noisy:train"  # type: ignore[union-attr]
    assert not (tmp_path / "imported").exists()
    assert "noisy" not in sys.modules
    (folder / "spec.yaml").write_text(SPEC.replace("examples.functions:quadratic", "moved:train"))
    assert find_spec("bad-input").trial.entry.ref == "moved:train"  # type: ignore[union-attr]
    with pytest.raises(SpecError, match="cannot import module `moved`"):
        load_spec(folder / "spec.yaml")


def test_an_unexpected_failure_while_loading_is_one_paragraph_asking_for_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner import cli

    def broken(path: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "load_spec", broken)
    (tmp_path / FILE).write_text(SPEC)
    outcome = tuner("validate", FILE)
    assert_refused(outcome, tmp_path, keep={FILE}, file=FILE)
    assert "ZeroDivisionError" in outcome.output
    assert "please report it" in outcome.output


def test_ctrl_c_while_loading_is_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner import cli

    def interrupted(path: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_spec", interrupted)
    (tmp_path / FILE).write_text(SPEC)
    assert tuner("validate", FILE).code == 130
