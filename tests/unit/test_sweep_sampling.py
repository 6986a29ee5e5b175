"""Sweep specs and sampling without a stack: what a space allows, when a sweep stops, and
that a study brought up to date from the record asks what a rebuilt one would."""

import random
from dataclasses import replace

import pytest

from algohost.errors import (
    GridNotEnumerable,
    GridTooLarge,
    InvalidParameterRange,
    TooManyTrials,
)
from algohost.store.sweeps import Trial, TrialStatus
from algohost.sweepspace import (
    Direction,
    Objective,
    Param,
    Pruning,
    Strategy,
    SweepSpec,
    resolve_spec,
)
from algohost.worker.sampling import StudyCache, propose
from algohost.worker.sweeping import stop_reason

XY = {"x": Param("float", -5.0, 8.0), "y": Param("float", -4.0, 4.0)}


def spec_of(strategy=Strategy.TPE, space=XY, trials=30, **extra):
    return SweepSpec(space=space, strategy=strategy, objective=Objective("score"),
                     trials=trials, seed=3, **extra)


def score(params):
    return 10 - (params["x"] - 3) ** 2 - (params["y"] + 1) ** 2


@pytest.mark.parametrize("param, problem", [
    (Param("float", 2.0, 1.0), "empty_range"),
    (Param("int", 1, 1), "empty_range"),
    (Param("float", 0.0, 1.0, log=True), "log_needs_positive"),
    (Param("float", 0.1, 1.0, step=0.1, log=True), "log_with_step"),
    (Param("float", 0.0, 1.0, step=2.0), "bad_step"),
    (Param("int", 0.5, 3), "not_integer"),
])
def test_a_range_that_cannot_be_sampled_is_refused_naming_its_problem(param, problem):
    with pytest.raises(InvalidParameterRange) as refused:
        resolve_spec(spec_of(space={"p": param}), 1000)
    assert refused.value.details == {"param": "p", "problem": problem}


def test_a_grid_counts_its_points_and_refuses_what_it_cannot_enumerate():
    grid = resolve_spec(spec_of(Strategy.GRID, trials=0, space={
        "a": Param("int", 1, 3), "b": Param("float", 0.0, 1.0, step=0.5),
        "c": Param("choice", values=("u", None))}), 1000)
    assert grid.trials == 18 and len(grid.grid_points()) == 18
    assert grid.grid_points()[:2] == [{"a": 1, "b": 0.0, "c": "u"}, {"a": 1, "b": 0.0, "c": None}]
    assert resolve_spec(replace(grid, trials=5), 1000).trials == 5
    with pytest.raises(GridNotEnumerable):
        resolve_spec(spec_of(Strategy.GRID, space={"x": Param("float", 0.0, 1.0)}), 1000)
    with pytest.raises(GridTooLarge):
        resolve_spec(spec_of(Strategy.GRID, trials=0,
                             space={"x": Param("int", 0, 10**12)}), 1000)
    with pytest.raises(TooManyTrials):
        resolve_spec(spec_of(trials=1001), 1000)


@pytest.mark.parametrize("space", [
    {"x": Param("int", -5718361, 161227287362933620736)},  # wider than a C ssize_t
    {"x": Param("float", -1e308, 1e308, step=1e-300)},  # a count that is not finite
    {f"x{n}": Param("int", 0, 10**1000) for n in range(6)},  # a product past printing
])
def test_a_grid_too_large_to_count_is_refused_as_too_large(space):
    with pytest.raises(GridTooLarge) as refused:
        resolve_spec(spec_of(Strategy.GRID, trials=0, space=space), 1000)
    assert "points" in refused.value.message and refused.value.details["limit"] == 1000


def test_parallelism_never_exceeds_the_budget():
    assert resolve_spec(spec_of(trials=3, parallelism=8), 1000).parallelism == 3


def finished(number, value, status=TrialStatus.SUCCEEDED):
    return Trial(number=number, job_id=f"j{number}", params={}, status=status,
                 objective=value)


def test_patience_stops_after_that_many_trials_without_a_better_objective():
    spec = spec_of(trials=50, pruning=Pruning(patience=3, min_delta=0.5))
    trials = [finished(0, 1.0), finished(1, 2.0), finished(2, 2.4), finished(3, None,
              TrialStatus.FAILED), finished(4, 2.2)]
    assert stop_reason(spec, trials) is None  # 2.4 and 2.2 are not 0.5 better than 2.0
    assert stop_reason(spec, [*trials, finished(5, 1.0)]) == "no_improvement"
    minimizing = replace(spec, objective=Objective("loss", Direction.MINIMIZE))
    assert stop_reason(minimizing, [finished(0, 3.0), finished(1, 2.0), finished(2, 1.0)]) \
        is None
    assert stop_reason(spec_of(trials=2), [finished(0, 1.0), finished(1, 2.0)]) \
        == "budget_spent"


def test_random_draws_depend_on_the_seed_and_the_trial_number_only():
    spec = spec_of(Strategy.RANDOM)
    first = [propose(spec, [], n) for n in range(5)]
    assert first == [propose(spec, [finished(0, 1.0)] * n, n) for n in range(5)]
    assert first != [propose(replace(spec, seed=4), [], n) for n in range(5)]


def test_a_cached_study_asks_what_a_study_rebuilt_from_the_record_asks():
    """Trials settle out of order, four in flight, as a real sweep's do."""
    spec = spec_of(trials=24, parallelism=4)
    cache, rng, trials = StudyCache(), random.Random(5), []
    while len(trials) < spec.trials:
        running = [t for t in trials if t.status is TrialStatus.RUNNING]
        if len(running) >= spec.parallelism:
            done = rng.choice(running)
            trials[done.number] = replace(done, status=TrialStatus.SUCCEEDED,
                                          objective=score(done.params))
            continue
        cached = propose(spec, trials, len(trials), cache, "s")
        assert cached == propose(spec, trials, len(trials))
        trials.append(Trial(number=len(trials), job_id="", params=cached))


def test_a_cache_that_asked_for_a_number_another_step_took_starts_again():
    spec = spec_of(trials=12)
    cache = StudyCache()
    trials = [Trial(n, "", propose(spec, [], n), TrialStatus.SUCCEEDED, 1.0)
              for n in range(10)]
    propose(spec, trials, 10, cache, "s")  # asked, then another step numbered 10 first
    theirs = [*trials, Trial(10, "", {"x": 0.0, "y": 0.0})]
    assert propose(spec, theirs, 11, cache, "s") == propose(spec, theirs, 11)
