"""A sweep's definition: its parameter space, strategy, budget, objective and stopping rule.

One typed definition that the API validates, the store keeps and the worker samples
from; every rule a space must obey (ranges, log scales, a grid's size) is checked here,
so a bad spec is a 400 naming the problem, never a failure inside the worker.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from algohost.errors import (
    GridNotEnumerable,
    GridTooLarge,
    InvalidParameterRange,
    TooManyTrials,
)

Choice = str | int | float | bool | None


GRID_BEYOND_COUNTING = 10**18  # a grid at least this large is only ever refused


class Strategy(StrEnum):
    GRID = "grid"
    RANDOM = "random"
    TPE = "tpe"


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


@dataclass(frozen=True)
class Param:
    """One dimension: `int` and `float` are ranges (inclusive, with an optional step or a
    log scale); `choice` is a list of values."""

    type: str  # int | float | choice
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    values: tuple[Choice, ...] = ()

    def grid_size(self, name: str) -> int:
        """How many values this dimension takes in a grid, counted without listing them."""
        if self.type == "choice":
            return len(self.values)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            # Counted, not sized by range(): a range wider than a C ssize_t is valid JSON.
            span, step = int(self.high) - int(self.low), int(self.step or 1)
            return max(0, span // step + 1) if step > 0 else int(span <= 0)
        if self.step is None:
            raise GridNotEnumerable(
                f"a grid cannot enumerate the float range {name!r} without a step",
                param=name)
        count = (self.high - self.low) / self.step
        if not math.isfinite(count):
            return GRID_BEYOND_COUNTING
        return math.floor(count + 1e-9) + 1

    def grid(self, name: str) -> list[Choice]:
        """Every value this dimension takes in a grid."""
        count = self.grid_size(name)
        if self.type == "choice":
            return list(self.values)
        assert self.low is not None
        if self.type == "int":
            return [int(self.low) + i * int(self.step or 1) for i in range(count)]
        assert self.step is not None
        return [round(self.low + i * self.step, 12) for i in range(count)]


@dataclass(frozen=True)
class Objective:
    key: str  # a key of the output; dots reach into nested objects ("metrics.f1")
    direction: Direction = Direction.MAXIMIZE

    def better(self, value: float, than: float | None, by: float = 0.0) -> bool:
        if than is None:
            return True
        if self.direction is Direction.MAXIMIZE:
            return value > than + by
        return value < than - by

    def read(self, output: Any) -> float | None:
        """The objective's value in a trial's output, or None when it has none."""
        value = output
        for part in self.key.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        number = float(value)
        return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Pruning:
    """Stop launching trials once `patience` finished trials in a row (by trial number)
    have not beaten the best before them by more than `min_delta`."""

    patience: int
    min_delta: float = 0.0


@dataclass(frozen=True)
class SweepSpec:
    space: dict[str, Param]
    strategy: Strategy
    objective: Objective
    trials: int
    parallelism: int = 1
    seed: int = 0
    pruning: Pruning | None = None
    input: dict[str, Any] = field(default_factory=dict)  # fixed inputs; params are set over them
    timeout_s: int | None = None

    def grid_points(self) -> list[dict[str, Choice]]:
        names = list(self.space)
        axes = [self.space[name].grid(name) for name in names]
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*axes)]

    def trial_input(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.input, **params}

    def to_plain(self) -> dict[str, Any]:
        plain = asdict(self)
        for name, param in plain["space"].items():
            param["values"] = list(param["values"])
            plain["space"][name] = {k: v for k, v in param.items() if v not in (None, ())}
        return plain

    @staticmethod
    def from_plain(plain: dict[str, Any]) -> SweepSpec:
        space = {name: Param(**{**p, "values": tuple(p.get("values", ()))})
                 for name, p in plain["space"].items()}
        objective = Objective(plain["objective"]["key"],
                              Direction(plain["objective"]["direction"]))
        pruning = Pruning(**plain["pruning"]) if plain.get("pruning") else None
        return SweepSpec(space=space, strategy=Strategy(plain["strategy"]),
                         objective=objective, trials=plain["trials"],
                         parallelism=plain.get("parallelism", 1), seed=plain.get("seed", 0),
                         pruning=pruning, input=plain.get("input") or {},
                         timeout_s=plain.get("timeout_s"))


def _whole(number: float) -> bool:
    # An int is whole however large; float() of one past 1e308 would overflow.
    return isinstance(number, int) or float(number).is_integer()


def _num(number: float) -> str:
    return str(number) if isinstance(number, int) else f"{number:g}"


def check_param(name: str, param: Param) -> None:
    """Raise InvalidParameterRange when a range is empty or its scale impossible."""
    if param.type == "choice":
        return
    low, high, step = param.low, param.high, param.step

    def bad(problem: str, message: str) -> InvalidParameterRange:
        return InvalidParameterRange(f"parameter {name!r}: {message}", param=name,
                                     problem=problem)

    if low is None or high is None:
        raise bad("missing_bound", "a range needs low and high")
    if param.type == "int" and not (_whole(low) and _whole(high)):
        raise bad("not_integer", "an int range has whole-number bounds")
    if not low < high:
        raise bad("empty_range", f"low ({_num(low)}) must be below high ({_num(high)})")
    if step is not None:
        if step <= 0 or step > high - low:
            raise bad("bad_step",
                      f"step must be above 0 and at most high - low ({_num(high - low)})")
        if param.type == "int" and not _whole(step):
            raise bad("not_integer", "an int range has a whole-number step")
    if param.log:
        if low <= 0:
            raise bad("log_needs_positive", "a log scale needs low above 0")
        if step is not None and not (param.type == "int" and step == 1):
            raise bad("log_with_step", "a log scale takes no step")


def resolve_spec(spec: SweepSpec, max_trials: int) -> SweepSpec:
    """The spec with its budget settled, or the error naming what is wrong with it.

    A grid runs each point once: its budget is the grid's size (or fewer, if asked)."""
    for name, param in spec.space.items():
        check_param(name, param)
    trials = spec.trials
    if spec.strategy is Strategy.GRID:
        size = 1
        for name, param in spec.space.items():
            # Past the limit, by how much does not matter: the product of a few huge
            # dimensions would not even print (Python refuses ints of over 4,300 digits).
            size = min(size * param.grid_size(name), GRID_BEYOND_COUNTING)
        if size > max_trials:
            shown = "more than 10^18" if size >= GRID_BEYOND_COUNTING else str(size)
            raise GridTooLarge(f"the grid has {shown} points; a sweep runs at most "
                               f"{max_trials} trials", points=min(size, GRID_BEYOND_COUNTING),
                               limit=max_trials)
        trials = min(trials, size) if trials else size
    if trials > max_trials:
        raise TooManyTrials(f"a sweep runs at most {max_trials} trials; this one asks for "
                            f"{trials}", trials=trials, limit=max_trials)
    trials = trials or DEFAULT_TRIALS
    return SweepSpec(space=spec.space, strategy=spec.strategy, objective=spec.objective,
                     trials=trials, parallelism=max(1, min(spec.parallelism, trials)),
                     seed=spec.seed, pruning=spec.pruning, input=spec.input,
                     timeout_s=spec.timeout_s)


DEFAULT_TRIALS = 20  # random and tpe, when the budget names no trials
