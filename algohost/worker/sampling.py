"""The next point of a sweep, asked of Optuna through its ask/tell interface.

No Optuna storage holds anything: each ask is made of an in-memory study holding exactly
the trials in the sweep's record (`create_trial` + `add_trial`, or a cached study told
what changed since), so the record stays the only truth and a restarted worker samples
exactly as the lost one would have. Each trial number has its own sampler seed: random
trials depend on (seed, number) only, whatever order trials finish in; TPE's also
depend on the results told so far.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
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


def distributions_of(spec: SweepSpec) -> dict[str, BaseDistribution]:
    return {name: distribution(param) for name, param in spec.space.items()}


def rebuilt_study(spec: SweepSpec, trials: Sequence[Trial]) -> optuna.Study:
    """A study holding exactly the record's trials, in trial-number order."""
    distributions = distributions_of(spec)
    study = optuna.create_study(direction=spec.objective.direction.value)
    for trial in trials:
        state = _STATES[trial.status]
        study.add_trial(create_trial(
            params=trial.params, distributions=distributions, state=state,
            value=trial.objective if state is TrialState.COMPLETE else None))
    return study


def _told(trial: Trial) -> tuple[TrialStatus, float | None]:
    return trial.status, trial.objective


class StudyCache:
    """In-process studies of the sweeps this worker steps, brought up to date from the
    record instead of rebuilt (rebuilding costs a deep copy per trial: 30-40 ms at a
    hundred). The record stays the truth: an entry that does not match it (a trial it
    asked for that another step numbered first, a worker that saw other results) is
    dropped and the study rebuilt, which asks exactly what the entry would have."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[optuna.Study, list[Trial]]] = OrderedDict()
        self._lock = threading.Lock()

    def note_asked(self, key: str, trial: Trial) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry[1].append(trial)

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def study(self, key: str, spec: SweepSpec, trials: Sequence[Trial]) -> optuna.Study:
        with self._lock:
            entry = self._entries.pop(key, None)
        study = self._synced(entry, spec, trials) if entry else None
        if study is None:
            study = rebuilt_study(spec, trials)
        with self._lock:
            self._entries[key] = (study, list(trials))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return study

    @staticmethod
    def _synced(entry: tuple[optuna.Study, list[Trial]], spec: SweepSpec,
                trials: Sequence[Trial]) -> optuna.Study | None:
        study, known = entry
        if len(known) > len(trials):
            return None
        for before, now in zip(known, trials, strict=False):
            if before.params != now.params:
                return None
            if _told(before) == _told(now):
                continue
            if before.status is not TrialStatus.RUNNING:
                return None  # a settled trial never changes: not the same sweep's history
            if now.status is TrialStatus.SUCCEEDED:
                study.tell(now.number, now.objective)
            elif now.status is TrialStatus.FAILED:
                study.tell(now.number, state=TrialState.FAIL)
        distributions = distributions_of(spec)
        for trial in trials[len(known):]:
            state = _STATES[trial.status]
            study.add_trial(create_trial(
                params=trial.params, distributions=distributions, state=state,
                value=trial.objective if state is TrialState.COMPLETE else None))
        return study


def propose(spec: SweepSpec, trials: Sequence[Trial], number: int,
            cache: StudyCache | None = None, key: str = "") -> dict[str, Any]:
    """The parameters of trial `number`, given the trials before it."""
    if spec.strategy is Strategy.GRID:
        return dict(spec.grid_points()[number])
    if spec.strategy is Strategy.RANDOM:
        # A random draw depends on (seed, number) only: no history to rebuild.
        study = optuna.create_study(direction=spec.objective.direction.value)
    elif cache is not None:
        study = cache.study(key, spec, trials)
    else:
        study = rebuilt_study(spec, trials)
    study.sampler = _sampler(spec, number)
    asked = study.ask(distributions_of(spec))
    if cache is not None and spec.strategy is Strategy.TPE:
        # The asked trial stays in the cached study as running, as the record will have it
        # once its number is taken; if another step takes that number, forget() drops it.
        cache.note_asked(key, Trial(number=number, job_id="", params=dict(asked.params)))
    return dict(asked.params)
