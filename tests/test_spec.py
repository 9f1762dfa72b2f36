from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.backend import FunctionEntry
from tuner.secrets import is_secret_name, redact, redact_spec, redact_url
from tuner.space import Categorical, Float, Int
from tuner.spec import (
    SpecError,
    StudySpec,
    load_spec,
    load_spec_text,
    parse_duration,
    spec_json_schema,
)

ROOT = Path(__file__).resolve().parent.parent

VALID = textwrap.dedent(
    """\
    name: digits-svm
    objective: {metric: val_accuracy, direction: maximize}
    space:
      C:      {type: float, low: 1.0e-3, high: 1.0e3, log: true}
      gamma:  {type: float, low: 1.0e-5, high: 1.0, log: true}
      kernel: {type: categorical, choices: [rbf, poly]}
      degree: {type: int, low: 2, high: 5, when: {kernel: poly}}
    strategy: {type: bayesian, engine: tpe, seed: 42}
    budget: {max_trials: 30, max_concurrent: 2, max_time: 10m, max_failures: 5}
    trial: {function: examples.quickstart.train:train_svm}
    backend: {type: ray}
    tracking: {mlflow: {experiment: digits-svm}}
    """
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def only_issue(text: str, tmp_path: Path) -> Any:
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    assert len(caught.value.issues) == 1, caught.value
    return caught.value.issues[0]


def test_the_issue_example_loads_with_every_section() -> None:
    spec = load_spec_text(VALID, "study.yaml", spec_dir=str(ROOT))
    assert spec.name == "digits-svm"
    assert spec.budget.max_time == 600.0
    assert spec.space["degree"].when == {"kernel": ("poly",)}
    assert spec.backend.type == "ray"
    assert spec.search_space.is_active("degree", {"kernel": "poly"})


def test_the_saved_spec_keeps_the_backends_own_options() -> None:
    text = VALID.replace("backend: {type: ray}", "backend: {type: ray, address: auto, num_gpus: 2}")
    spec = load_spec_text(text, "study.yaml", spec_dir=str(ROOT))
    again = load_spec_text(spec.to_yaml(), "saved.yaml", spec_dir=str(ROOT))
    assert again.backend == spec.backend
    assert again.backend.address == "auto"  # type: ignore[attr-defined]


def test_python_api_builds_the_same_spec_as_yaml() -> None:
    from_yaml = load_spec_text(VALID, "study.yaml", spec_dir=str(ROOT))
    built = StudySpec(
        name="digits-svm",
        objective={"metric": "val_accuracy", "direction": "maximize"},
        space={
            "C": Float(1e-3, 1e3, log=True),
            "gamma": Float(1e-5, 1.0, log=True),
            "kernel": Categorical(["rbf", "poly"]),
            "degree": Int(2, 5, when={"kernel": "poly"}),
        },
        strategy={"type": "bayesian", "engine": "tpe", "seed": 42},
        budget={"max_trials": 30, "max_concurrent": 2, "max_time": "10m", "max_failures": 5},
        trial={"function": "examples.quickstart.train:train_svm"},
        backend={"type": "ray"},
        tracking={"mlflow": {"experiment": "digits-svm"}},
    )
    assert built.model_dump() == from_yaml.model_dump()


@pytest.mark.parametrize(
    ("replace", "by", "field", "line", "message"),
    [
        (
            "log: true}\n  gamma",
            "log: true, lgo: 1}\n  gamma",
            "space.C.lgo",
            4,
            "did you mean `log`",
        ),
        ("low: 2, high: 5", "low: 5, high: 2", "space.degree", 7, "low=5, high=2"),
        (
            "low: 1.0e-3, high: 1.0e3, log: true",
            "low: 0, high: 1.0e3, log: true",
            "space.C",
            4,
            "low > 0",
        ),
        (
            "{type: int, low: 2, high: 5,",
            "{type: int, low: 2, high: 5, step: 2,",
            "space.degree",
            7,
            "must divide",
        ),
        ("choices: [rbf, poly]", "choices: []", "space.kernel.choices", 6, "empty"),
        ("choices: [rbf, poly]", "choices: [rbf, rbf]", "space.kernel.choices", 6, "twice"),
        ("when: {kernel: poly}", "when: {kernal: poly}", "space.degree.when", 7, "not a parameter"),
        (
            "when: {kernel: poly}",
            "when: {kernel: sigmoid}",
            "space.degree.when",
            7,
            "can never take",
        ),
        ("max_time: 10m", "max_time: 10 minutes", "budget.max_time", 9, "not a duration"),
        ("max_trials: 30", "max_trials: 0", "budget.max_trials", 9, "greater than 0"),
        ("max_concurrent: 2", "max_concurrent: -1", "budget.max_concurrent", 9, "greater than 0"),
        (
            "train:train_svm",
            "train:train_svn",
            "trial.function",
            10,
            "did you mean `examples.quickstart.train:train_svm`",
        ),
        (
            "examples.quickstart.train",
            "examples.nowhere",
            "trial.function",
            10,
            "cannot import module",
        ),
        ("engine: tpe", "engine: bohb", "strategy.engine", 8, "'tpe' or 'nsga2'"),
        ("type: bayesian", "type: annealing", "strategy", 8, "random"),
        ("{type: ray}", "{type: slurm}", "backend", 11, "available backends"),
        ("{type: ray}", "{type: ray, cpus: 2}", "backend.cpus", 11, "did you mean"),
        ("name: digits-svm", "name: digits svm!", "name", 1, "not a valid study name"),
        ("metric: val_accuracy", "metric: tuner.loss", "objective.metric", 2, "reserved"),
        ("{type: categorical, choices", "{choices", "space.kernel", 6, "type"),
    ],
)
def test_each_bad_input_names_the_field_the_line_and_a_fix(
    tmp_path: Path, replace: str, by: str, field: str, line: int, message: str
) -> None:
    assert replace in VALID
    issue = only_issue(VALID.replace(replace, by, 1), tmp_path)
    assert issue.field == field
    assert issue.line == line
    assert issue.column is not None
    assert message in issue.message
    assert str(issue).startswith(f"{tmp_path / 'study.yaml'}:{line}:")


def test_log_on_a_categorical_is_an_unknown_key(tmp_path: Path) -> None:
    issue = only_issue(
        VALID.replace("choices: [rbf, poly]", "choices: [rbf, poly], log: true"), tmp_path
    )
    assert issue.field == "space.kernel.log"
    assert (issue.line, issue.column) == (6, 53)


def test_grid_over_a_float_without_step_points_at_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, VALID.replace("type: bayesian, engine: tpe,", "type: grid,")))
    fields = {issue.field: issue for issue in caught.value.issues}
    assert set(fields) == {"space.C.step", "space.gamma.step"}
    assert fields["space.C.step"].line == 4
    assert "add one" in fields["space.C.step"].message


def test_an_unbounded_budget_is_refused(tmp_path: Path) -> None:
    issue = only_issue(
        VALID.replace("max_trials: 30, ", "").replace("max_time: 10m, ", ""), tmp_path
    )
    assert issue.field == "budget"
    assert "never stop" in issue.message


def test_duplicate_keys_are_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    issue = only_issue(VALID + "name: other\n", tmp_path)
    assert issue.field == "name"
    assert issue.line == 13
    assert "twice" in issue.message


def test_yaml_object_tags_are_refused(tmp_path: Path) -> None:
    issue = only_issue(
        VALID.replace("name: digits-svm", "name: !!python/object/apply:os.system [echo hi]"),
        tmp_path,
    )
    assert issue.line == 1
    assert "invalid YAML" in issue.message


def test_yaml_syntax_errors_point_at_the_line(tmp_path: Path) -> None:
    issue = only_issue(VALID.replace("{type: ray}", "{type: ray"), tmp_path)
    assert issue.line is not None
    assert issue.line >= 11
    assert "invalid YAML" in issue.message


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    text = VALID.replace("max_trials: 30", "max_trials: 0").replace(
        "low: 2, high: 5", "low: 5, high: 2"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    assert {i.field for i in caught.value.issues} == {"budget.max_trials", "space.degree"}


SEEDED = VALID + textwrap.dedent(
    """\
    seed_trials:
      - {C: 1.0, kernel: rbf}
      - C: 5000.0
        kernel: rbf
      - kernel: poly
        degre: 3
    """
)


def test_a_seed_trial_outside_the_space_is_an_error_at_its_line_saying_what_fits(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, SEEDED)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    issues = {issue.field: issue for issue in caught.value.issues}
    assert set(issues) == {"seed_trials.1.C", "seed_trials.2.degre"}

    out_of_range = issues["seed_trials.1.C"]
    assert out_of_range.line == 15  # `- C: 5000.0`, the entry's own line
    assert "5000.0" in out_of_range.message
    assert "[0.001, 1000.0]" in out_of_range.message  # the values that would fit
    assert str(out_of_range).startswith(f"{path}:15:")

    unknown = issues["seed_trials.2.degre"]
    assert unknown.line == 18  # `degre: 3`, not the entry's first line
    assert "did you mean `degree`?" in unknown.message
    assert str(unknown).startswith(f"{path}:18:")
    assert "seed_trials.2.degre" in str(caught.value)


def test_the_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "my study.yaml"
    path.write_text(VALID.replace("name: digits-svm\n", ""))
    assert load_spec(path).name == "my-study"


def test_a_function_next_to_the_spec_is_importable(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mytrain.py").write_text("def fit(params):\n    return 1.0\n")
    text = VALID.replace("examples.quickstart.train:train_svm", "mytrain:fit")
    entry = load_spec(write(tmp_path / "sub", text)).trial.entry
    assert isinstance(entry, FunctionEntry)
    assert entry.ref == "mytrain:fit"
    assert str(tmp_path / "sub") in entry.search_path


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0), ("2d", 172800.0), ("1.5", 1.5)],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "-5", 0, True, "5x", "inf"])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_json_schema_lists_sections_and_backends() -> None:
    schema = spec_json_schema()
    json.dumps(schema)
    assert {"name", "objective", "space", "strategy", "budget", "trial", "backend"} <= set(
        schema["properties"]
    )
    backend_types = {
        b["properties"]["type"].get("const") for b in schema["properties"]["backend"]["oneOf"]
    }
    assert {"ray", "inprocess"} <= backend_types


# --- no input may produce anything but a spec or a SpecError ---------------------------------

_base = yaml.safe_load(VALID)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True), st.text(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_paths(value, (*prefix, key)))
    return out


_PATHS = [p for p in _paths(_base) if p]


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    data = yaml.safe_load(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_PATHS))
        node = data
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if isinstance(node, dict):
                if draw(st.booleans()):
                    node[path[-1]] = draw(_values)
                else:
                    node.pop(path[-1], None)
    return yaml.safe_dump(data)


@settings(
    max_examples=int(os.environ.get("TUNER_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.one_of(mutated_specs(), st.text(max_size=200), _values.map(yaml.safe_dump)))
def test_any_input_gives_a_spec_or_a_spec_error_never_a_traceback(text: str) -> None:
    try:
        spec = load_spec_text(text, "fuzz.yaml", spec_dir=str(ROOT))
    except SpecError as exc:
        assert exc.issues  # noqa: PT017 - any input, so no single pytest.raises
        for issue in exc.issues:
            assert issue.message
            assert str(issue).startswith("fuzz.yaml")
    else:
        assert isinstance(spec, StudySpec)


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("WANDB_API_KEY", True),
        ("hf_token", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("DB_Password", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("OMP_NUM_THREADS", False),
        ("CUDA_VISIBLE_DEVICES", False),
    ],
)
def test_secret_names_are_recognised_in_any_case(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_redact_masks_only_secret_named_values() -> None:
    env = {"HF_TOKEN": "hf_abc", "SEED": "1"}
    assert redact(env) == {"HF_TOKEN": "****", "SEED": "1"}
    assert env["HF_TOKEN"] == "hf_abc"  # a copy
    assert redact_url("postgresql://tuner:hunter2@db/s") == "postgresql://tuner:****@db/s"
    assert redact_url("sqlite:///studies.db") == "sqlite:///studies.db"


def test_redact_spec_masks_every_env_and_environment_mapping() -> None:
    data = {
        "trial": {"env": {"WANDB_API_KEY": "w-123", "MODE": "fast"}},
        "backend": {"type": "sagemaker", "environment": {"HF_TOKEN": "hf-1", "A": "b"}},
        "space": {"max_tokens": {"type": "int", "low": 1, "high": 9}},
    }
    redacted = redact_spec(data)
    assert redacted["trial"]["env"] == {"WANDB_API_KEY": "****", "MODE": "fast"}
    assert redacted["backend"]["environment"] == {"HF_TOKEN": "****", "A": "b"}
    assert redacted["space"] == data["space"]  # a parameter named like a secret is no secret


def test_to_yaml_redacted_hides_secrets_and_the_saved_form_keeps_them() -> None:
    text = VALID.replace(
        "trial: {function: examples.quickstart.train:train_svm}",
        "trial: {function: examples.quickstart.train:train_svm, "
        "env: {WANDB_API_KEY: w-secret-1, MODE: fast}}",
    )
    spec = load_spec_text(text, "study.yaml", spec_dir=str(ROOT))
    shown = spec.to_yaml(redact=True)
    assert "w-secret-1" not in shown
    assert "WANDB_API_KEY: '****'" in shown
    assert "MODE: fast" in shown
    saved = load_spec_text(spec.to_yaml(), "saved.yaml", spec_dir=str(ROOT))
    assert saved.trial.env["WANDB_API_KEY"] == "w-secret-1"


def test_spec_errors_never_echo_a_secret_named_value(tmp_path: Path) -> None:
    text = VALID.replace(
        "trial: {function: examples.quickstart.train:train_svm}",
        "trial: {function: examples.quickstart.train:train_svm, env: {HF_TOKEN: 918273645}}",
    )
    issue = only_issue(text, tmp_path)
    assert issue.field == "trial.env.HF_TOKEN"
    assert "918273645" not in str(issue)


def test_a_python_built_spec_still_checks_its_function_imports() -> None:
    with pytest.raises(ValueError, match="cannot import module `no_such_module`"):
        StudySpec(
            name="s",
            objective={"metric": "loss"},
            space={"x": Float(0.0, 1.0)},
            budget={"max_trials": 1},
            trial={"function": "no_such_module:train"},
        )


def test_reading_without_the_import_check_builds_the_entry_from_the_reference() -> None:
    text = VALID.replace("examples.quickstart.train:train_svm", "moved_away:train")
    entry = load_spec_text(text, "study.yaml", spec_dir=str(ROOT), import_trial=False).trial.entry
    assert isinstance(entry, FunctionEntry)
    assert entry.ref == "moved_away:train"
    assert entry.function is None
    with pytest.raises(SpecError, match="cannot import module `moved_away`"):
        load_spec_text(text, "study.yaml", spec_dir=str(ROOT))
