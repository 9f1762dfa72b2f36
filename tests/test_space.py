from __future__ import annotations

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tuner.space import (
    Categorical,
    Float,
    Int,
    Space,
    SpaceError,
    from_optuna,
    from_skopt_value,
    to_optuna,
    to_skopt,
    to_skopt_value,
)


def test_low_must_be_below_high_and_the_message_quotes_both() -> None:
    with pytest.raises(SpaceError, match=r"^tuner\.Float\(low=3\.0, high=1\.0\): `low < high`"):
        Float(3.0, 1.0)


def test_log_scale_needs_a_positive_low() -> None:
    with pytest.raises(SpaceError, match="log-scaled range needs `low > 0`"):
        Float(0.0, 1.0, log=True)


def test_step_must_divide_the_range() -> None:
    with pytest.raises(SpaceError, match="`step` must divide"):
        Float(0.0, 1.0, step=0.3)
    assert Float(0.0, 1.0, step=0.25).step == 0.25


def test_categorical_choices_must_be_unique_and_not_empty() -> None:
    with pytest.raises(SpaceError, match="empty"):
        Categorical([])
    with pytest.raises(SpaceError, match="twice"):
        Categorical(["a", "b", "a"])
    # 1 and True compare equal in Python but are different choices.
    assert Categorical([1, True]).choices == (1, True)


def test_parameters_are_immutable() -> None:
    param = Float(0.0, 1.0)
    with pytest.raises(ValidationError):
        param.low = 0.5  # type: ignore[misc]


def test_conditions_must_name_an_earlier_categorical_and_a_possible_value() -> None:
    with pytest.raises(SpaceError, match="not a parameter"):
        Space({"x": Float(0, 1, when={"k": "a"})})
    with pytest.raises(SpaceError, match="defined after"):
        Space({"x": Float(0, 1, when={"k": "a"}), "k": Categorical(["a", "b"])})
    with pytest.raises(SpaceError, match="only name a categorical"):
        Space({"n": Int(1, 3), "x": Float(0, 1, when={"n": 1})})
    with pytest.raises(SpaceError, match="can never take"):
        Space({"k": Categorical(["a", "b"]), "x": Float(0, 1, when={"k": "c"})})


def test_suggest_skips_inactive_parameters() -> None:
    space = Space(
        {
            "kernel": Categorical(["rbf", "poly"]),
            "degree": Int(2, 5, when={"kernel": "poly"}),
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        config = space.suggest(study.ask())
        seen.add(config["kernel"])
        assert ("degree" in config) == (config["kernel"] == "poly")
        assert space.contains(config)
    assert seen == {"rbf", "poly"}


def test_grid_enumerates_every_configuration_once_respecting_conditions() -> None:
    space = Space(
        {
            "kernel": Categorical(["rbf", "poly"]),
            "degree": Int(2, 3, when={"kernel": "poly"}),
            "lr": Float(0.0, 1.0, step=0.5),
        }
    )
    grid = space.grid()
    assert len(grid) == (1 + 2) * 3
    assert {"kernel": "rbf", "lr": 0.5} in grid
    assert {"kernel": "poly", "degree": 3, "lr": 1.0} in grid
    assert len({tuple(sorted(c.items())) for c in grid}) == len(grid)


def test_grid_of_a_continuous_float_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs a `step`"):
        Space({"x": Float(0, 1)}).grid()


params = st.one_of(
    st.builds(
        lambda low, width, log: Float(low, low + width, log=log),
        st.floats(0.001, 100),
        st.floats(0.01, 100),
        st.booleans(),
    ),
    st.builds(lambda low, width: Int(low, low + width), st.integers(-50, 50), st.integers(1, 50)),
    st.builds(lambda n: Float(0.0, n * 0.5, step=0.5), st.integers(1, 20)),
    st.builds(lambda n: Int(0, 3 * n, step=3), st.integers(1, 20)),
    st.builds(
        lambda xs: Categorical(xs),
        st.lists(
            st.one_of(st.text(max_size=5), st.integers(), st.booleans()),
            min_size=1,
            max_size=5,
            unique_by=lambda v: (type(v), v),
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(params)
def test_optuna_conversion_round_trips(param: Float | Int | Categorical) -> None:
    assert from_optuna(to_optuna(param)) == param


@settings(max_examples=100, deadline=None)
@given(params, st.integers(0, 2**31 - 1))
def test_skopt_conversion_round_trips(param: Float | Int | Categorical, seed: int) -> None:
    import numpy as np

    from tuner.strategies._batch import random_config

    dimension = to_skopt(param, "p")
    value = random_config(Space({"p": param}), np.random.default_rng(seed))["p"]
    point = to_skopt_value(param, value)
    assert point in dimension
    back = from_skopt_value(param, point)
    assert back == pytest.approx(value)
    assert type(back) is type(value)

    drawn = from_skopt_value(param, np.atleast_1d(dimension.rvs(n_samples=1, random_state=seed))[0])
    assert Space({"p": param}).contains({"p": drawn})


def test_a_default_must_be_a_value_the_parameter_can_take() -> None:
    assert Float(0.0, 1.0, default=0.5).default == 0.5
    with pytest.raises(SpaceError, match=r"`default` is 2\.0, outside \[0\.0, 1\.0\]"):
        Float(0.0, 1.0, default=2.0)
    with pytest.raises(SpaceError, match="not a whole number"):
        Int(1, 4, default=2.5)
    with pytest.raises(SpaceError, match="not among the choices"):
        Categorical(["a", "b"], default="c")


def test_a_configuration_is_checked_parameter_by_parameter() -> None:
    space = Space(
        {
            "kernel": Categorical(["rbf", "poly"]),
            "degree": Int(2, 5, when={"kernel": "poly"}),
            "C": Float(0.1, 10.0),
        }
    )
    assert space.config_problems({"kernel": "poly", "degree": 3, "C": 1.0}) == []
    assert space.config_problems({"C": 1.0}) == []  # the strategy proposes the rest
    problems = dict(space.config_problems({"kernel": "rbf", "degree": 3, "C": 20.0}))
    assert "only takes part when kernel in ['poly']" in problems["degree"]
    assert "outside [0.1, 10.0]" in problems["C"]
    assert "did you mean `degree`?" in dict(space.config_problems({"degre": 3}))["degre"]
    missing = dict(space.config_problems({"kernel": "poly"}, complete=True))
    assert set(missing) == {"degree", "C"}
