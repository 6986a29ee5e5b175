"""A pipeline spec: named steps, each an algorithm call whose input is a JSON template that
maps the run's input (`"$input.x"`) and earlier steps' outputs (`"$steps.train.output.model"`).

Parsing, checking (unknown steps and references, cycles, each problem named) and resolving
templates live here only; the API, the scheduler and the command line import them. Nothing
here touches Redis, Celery or Docker.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from algohost.errors import (
    InvalidPipeline,
    PipelineCycle,
    UnknownReference,
    UnknownStep,
)
from algohost.jsonlimits import MAX_JSON_DEPTH, nesting_depth
from algohost.names import (
    REF_FORMS,
    STEP_NAME,
    STEP_NAME_PATTERN,
    STEP_REF_PATTERN,
    AlgorithmRef,
)

MAX_STEPS = 100
RUN_INPUT = "$input"
ESCAPE = "$$"  # "$$x" is the literal string "$x"
_SEGMENT = r"[A-Za-z0-9_-]{1,128}"
_INPUT_REF = re.compile(rf"\$input((?:\.{_SEGMENT})*)")
_STEP_REF = re.compile(rf"\$steps\.([^.]*)\.output((?:\.{_SEGMENT})*)")
REFERENCE_FORMS = ("$input, $input.KEY..., $steps.STEP.output or $steps.STEP.output.KEY... "
                   "(a KEY is letters, digits, '_' or '-'; a number indexes a list); "
                   "'$$' starts a literal '$'")


def _shallow(value: Any) -> Any:
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels of arrays and objects")
    return value


def whole_number(value: Any) -> Any:
    # JSON has one number type: 30.0 is the integer 30 to JSON Schema, and to us.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Template = Annotated[Any, AfterValidator(_shallow)]
TimeoutSeconds = Annotated[int, Field(ge=1), BeforeValidator(whole_number)]
VersionNumber = Annotated[int, Field(ge=1), BeforeValidator(whole_number)]
StepName = Annotated[str, StringConstraints(pattern=STEP_NAME_PATTERN)]


class StepSpec(BaseModel):
    """One step: a call of an algorithm of the pipeline's owner."""

    model_config = ConfigDict(extra="forbid", strict=True)

    algorithm: str = Field(pattern=STEP_REF_PATTERN, examples=["train@latest"],
                           description=REF_FORMS + "; without the owner: the pipeline's")
    input: Template = Field(default=RUN_INPUT, description=(
        "A JSON template: strings that are references are replaced by what they name: "
        + REFERENCE_FORMS + ". Default: the run's whole input"))
    after: list[StepName] = Field(default_factory=list, max_length=MAX_STEPS,
                                  description="Steps that must succeed first, besides those "
                                              "the input refers to")
    cache: bool = Field(default=True, description="Reuse an earlier successful call of the "
                                                  "same build with the same resolved input")
    timeout_s: TimeoutSeconds | None = Field(
        default=None, description="The call's limit, at most the server's max_timeout_s; "
                                  "default: the manifest's resources.timeout_s")


class PipelineSpec(BaseModel):
    """Steps by name; the graph is drawn by the references between them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    description: str = Field(default="", max_length=2000)
    steps: dict[StepName, StepSpec] = Field(
        min_length=1, max_length=MAX_STEPS, json_schema_extra={"additionalProperties": False},
        description="By name: 1-63 lowercase letters, digits or '_'")
    output: Template = Field(default=None, description="A JSON template of the run's output; "
                                                       "default: each last step's output by "
                                                       "its name")


def step_algorithm(algorithm: str, owner: str) -> AlgorithmRef:
    """A step's algorithm reference, the pipeline's owner filled in when it names none."""
    return AlgorithmRef.parse(algorithm if "/" in algorithm else f"{owner}/{algorithm}",
                              ranges=True)


@dataclass(frozen=True)
class Reference:
    """What a template string names: the run's input, or a step's output, and a path in it."""

    text: str
    step: str | None  # None: the run's input
    path: tuple[str, ...]


class Unresolvable(Exception):
    """A reference whose path is not in the value it names (a key missing from an output)."""

    def __init__(self, reference: str, why: str) -> None:
        super().__init__(f"{reference}: {why}")
        self.reference, self.why = reference, why


def parse_reference(text: str) -> Reference | None:
    """The reference `text` is, None for a plain string; UnknownReference when it starts
    with '$' but is no reference (a typo must not pass as a literal)."""
    if not text.startswith("$") or text.startswith(ESCAPE):
        return None
    if match := _INPUT_REF.fullmatch(text):
        return Reference(text, None, _path(match.group(1)))
    if match := _STEP_REF.fullmatch(text):
        step = match.group(1)
        if not STEP_NAME.matches(step):
            raise UnknownReference(f"{text!r} names no step: {STEP_NAME.what} is {STEP_NAME.rule}",
                                   reference=text)
        return Reference(text, step, _path(match.group(2)))
    raise UnknownReference(f"{text[:80]!r} is not a reference: {REFERENCE_FORMS}",
                           reference=text[:200])


def _path(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split(".")[1:]) if dotted else ()


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string in a template, with where it is (`input.a.0`)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}.{index}")


def references(template: Any, where: str) -> list[tuple[str, Reference]]:
    found = []
    for place, text in _strings(template, where):
        reference = parse_reference(text)
        if reference is not None:
            found.append((place, reference))
    return found


@dataclass(frozen=True)
class Graph:
    """A checked spec: each step's dependencies, and an order in which they can run."""

    spec: PipelineSpec
    needs: dict[str, tuple[str, ...]]
    order: tuple[str, ...]

    def descendants(self, step: str) -> set[str]:
        found: set[str] = set()
        frontier = [step]
        while frontier:
            current = frontier.pop()
            for name, needs in self.needs.items():
                if current in needs and name not in found:
                    found.add(name)
                    frontier.append(name)
        return found

    @property
    def sinks(self) -> list[str]:
        """Steps nothing depends on: the pipeline's results."""
        needed = {need for needs in self.needs.values() for need in needs}
        return [name for name in self.order if name not in needed]


def check(spec: PipelineSpec) -> Graph:
    """The spec's graph, or the error naming every unknown reference, unknown step or the
    cycle (in that order of precedence)."""
    unknown_references: list[dict[str, str]] = []
    unknown_steps: list[dict[str, str]] = []
    needs: dict[str, tuple[str, ...]] = {}
    templates: list[tuple[str, str | None, Any]] = [
        (f"steps.{name}.input", name, step.input) for name, step in spec.steps.items()]
    templates.append(("output", None, spec.output))
    for where, owner, template in templates:
        wanted: dict[str, None] = {}
        for place, text in _strings(template, where):
            try:
                reference = parse_reference(text)
            except UnknownReference as exc:
                unknown_references.append({"field": place, "reference": text[:200],
                                           "message": exc.message})
                continue
            if reference is None or reference.step is None:
                continue
            if reference.step not in spec.steps:
                unknown_steps.append({"field": place, "reference": text[:200],
                                      "step": reference.step})
            wanted[reference.step] = None
        if owner is not None:
            for index, after in enumerate(spec.steps[owner].after):
                if after not in spec.steps:
                    unknown_steps.append({"field": f"steps.{owner}.after.{index}",
                                          "reference": after, "step": after})
                wanted[after] = None
            needs[owner] = tuple(wanted)
    if unknown_references:
        raise UnknownReference(_listing("unknown references", unknown_references, "reference"),
                               problems=unknown_references)
    if unknown_steps:
        raise UnknownStep(_listing("references to unknown steps", unknown_steps, "step"),
                          problems=unknown_steps)
    self_loops = [name for name, wanted in needs.items() if name in wanted]
    if self_loops:
        raise PipelineCycle(f"step {self_loops[0]!r} depends on itself", cycle=self_loops[:1])
    sorter = TopologicalSorter(needs)
    try:
        order = tuple(sorter.static_order())
    except CycleError as exc:
        cycle = list(exc.args[1])
        raise PipelineCycle("steps depend on each other in a cycle: " + " -> ".join(cycle),
                            cycle=cycle) from exc
    return Graph(spec, needs, order)


def _listing(what: str, problems: list[dict[str, str]], key: str) -> str:
    shown = ", ".join(f"{p['field']}: {p[key]!r}" for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"{what}: {shown}{more}"


def parse_spec(data: Any) -> Graph:
    """A spec given as decoded JSON or TOML, checked; InvalidPipeline for its shape."""
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in error["loc"]) or "spec",
                     "message": error["msg"]}
                    for error in exc.errors(include_url=False, include_input=False,
                                            include_context=False)]
        raise InvalidPipeline("invalid pipeline spec: " + "; ".join(
            f"{p['field']}: {p['message']}" for p in problems[:5]), problems=problems) from exc
    return check(spec)


def load_spec_text(text: str, filename: str) -> Any:
    """A spec file's content as data: TOML when the name ends in .toml, else JSON."""
    try:
        if filename.endswith(".toml"):
            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        kind = "TOML" if filename.endswith(".toml") else "JSON"
        raise InvalidPipeline(f"{filename} is not valid {kind}: {exc}") from exc


def canonical(value: Any) -> bytes:
    """One byte string per JSON value, whatever its key order: what digests are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def spec_digest(spec: PipelineSpec) -> str:
    return digest(spec.model_dump(mode="json"))


def resolve(template: Any, lookup: Callable[[Reference], Any]) -> Any:
    """The template with each reference replaced by `lookup(reference)` followed along its
    path; Unresolvable when a path leads nowhere."""
    if isinstance(template, str):
        if template.startswith(ESCAPE):
            return template[1:]
        reference = parse_reference(template)
        return template if reference is None else follow(reference, lookup(reference))
    if isinstance(template, dict):
        return {key: resolve(item, lookup) for key, item in template.items()}
    if isinstance(template, list):
        return [resolve(item, lookup) for item in template]
    return template


def follow(reference: Reference, value: Any) -> Any:
    for depth, key in enumerate(reference.path):
        so_far = ".".join(reference.path[:depth]) or "the value"
        if isinstance(value, dict):
            if key not in value:
                raise Unresolvable(reference.text, f"{so_far} has no key {key!r}")
            value = value[key]
        elif isinstance(value, list) and key.isascii() and key.isdigit():
            if int(key) >= len(value):
                raise Unresolvable(reference.text, f"{so_far} has {len(value)} items")
            value = value[int(key)]
        else:
            raise Unresolvable(reference.text, f"{so_far} is not an object with {key!r}")
    return value

