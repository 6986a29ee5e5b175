"""The next point of a sweep, asked of Optuna through its ask/tell interface.

No Optuna storage holds anything: before each ask, an in-memory study is rebuilt from
the trials in the sweep's record (`create_trial` + `add_trial`), so the record stays
the only truth and a restarted worker samples exactly as the lost one would have.
Each trial number has its own sampler seed: random trials depend on (seed, number)
only, whatever order trials finish in; TPE's also depend on the results told so far.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import TrialState, create_trial

from algohost.store.sweeps import Trial, TrialStatus
from algohost.sweepspace import Param, Strategy, SweepSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distribution(param: Param) -> BaseDistribution:
    if param.type == "choice":
        return CategoricalDistribution(list(param.values))
    assert param.low is not None and param.high is not None
    if param.type == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log,
                               step=int(param.step or 1))
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def trial_seed(seed: int, number: int) -> int:
    """A seed of its own for each trial number, stable across processes (not hash())."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _sampler(spec: SweepSpec, number: int) -> BaseSampler:
    seed = trial_seed(spec.seed, number)
    if spec.strategy is Strategy.TPE:
        # constant_liar: trials still running count as bad guesses, so parallel trials
        # spread out instead of all landing on the same promising point.
        return TPESampler(seed=seed, constant_liar=True,
                          n_startup_trials=min(10, max(2, spec.trials // 5)))
    return RandomSampler(seed=seed)


_STATES = {TrialStatus.SUCCEEDED: TrialState.COMPLETE, TrialStatus.FAILED: TrialState.FAIL,
           TrialStatus.RUNNING: TrialState.RUNNING}


def propose(spec: SweepSpec, trials: Sequence[Trial], number: int) -> dict[str, Any]:
    """The parameters of trial `number`, given the trials before it."""
    if spec.strategy is Strategy.GRID:
        return dict(spec.grid_points()[number])
    distributions = {name: distribution(param) for name, param in spec.space.items()}
    study = optuna.create_study(direction=spec.objective.direction.value,
                                sampler=_sampler(spec, number))
    for trial in trials:
        if spec.strategy is Strategy.RANDOM:
            break  # history cannot change a random draw: skip rebuilding it
        state = _STATES[trial.status]
        study.add_trial(create_trial(
            params=trial.params, distributions=distributions, state=state,
            value=trial.objective if state is TrialState.COMPLETE else None))
    return dict(study.ask(distributions).params)
