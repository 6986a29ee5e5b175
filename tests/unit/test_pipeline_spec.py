"""Pipeline specs: the references a template may hold, how they resolve, and the graph."""

import pytest

from algohost.errors import InvalidPipeline, PipelineCycle, UnknownReference, UnknownStep
from algohost.pipeline import (
    Reference,
    Unresolvable,
    load_spec_text,
    parse_reference,
    parse_spec,
    resolve,
    spec_digest,
)


def spec(**steps):
    return {"steps": steps}


def test_references_name_the_run_input_or_a_steps_output_and_a_path():
    assert parse_reference("$input") == Reference("$input", None, ())
    assert parse_reference("$input.a.0") == Reference("$input.a.0", None, ("a", "0"))
    assert parse_reference("$steps.train.output.model") == Reference(
        "$steps.train.output.model", "train", ("model",))
    assert parse_reference("plain text") is None
    assert parse_reference("$$input") is None  # escaped: a literal


@pytest.mark.parametrize("text", ["$inputs", "$steps.a", "$steps.a.outputs", "$steps..output",
                                  "$input.", "$input.a b", "$", "$steps.A.output"])
def test_a_string_starting_with_a_dollar_that_is_no_reference_is_refused(text):
    with pytest.raises(UnknownReference):
        parse_reference(text)


def test_resolving_follows_paths_through_objects_and_lists():
    outputs = {"prep": {"rows": [{"x": 1}, {"x": 2}]}}

    def lookup(ref):
        return {"k": 3} if ref.step is None else outputs[ref.step]

    template = {"a": "$steps.prep.output.rows.1.x", "b": ["$input.k", "$$input", 7],
                "c": "$steps.prep.output"}
    assert resolve(template, lookup) == {"a": 2, "b": [3, "$input", 7], "c": outputs["prep"]}
    with pytest.raises(Unresolvable, match="no key 'nope'"):
        resolve("$steps.prep.output.nope", lookup)
    with pytest.raises(Unresolvable, match="2 items"):
        resolve("$steps.prep.output.rows.5", lookup)


def test_the_graph_follows_references_and_after_lists():
    graph = parse_spec(spec(
        b={"algorithm": "a/b", "input": {"x": "$steps.a.output"}},
        a={"algorithm": "a/a"},
        c={"algorithm": "a/c", "input": ["$steps.b.output", "$steps.a.output.y"],
           "after": ["d"]},
        d={"algorithm": "a/d"}))
    assert graph.needs == {"a": (), "b": ("a",), "c": ("b", "a", "d"), "d": ()}
    assert graph.order.index("a") < graph.order.index("b") < graph.order.index("c")
    assert graph.sinks == ["c"]
    assert graph.descendants("a") == {"b", "c"}


def test_every_unknown_step_is_named():
    with pytest.raises(UnknownStep) as caught:
        parse_spec(spec(a={"algorithm": "a/a", "input": ["$steps.x.output", "$steps.y.output"]},
                        b={"algorithm": "a/b", "after": ["z"]}))
    assert [p["step"] for p in caught.value.details["problems"]] == ["x", "y", "z"]


def test_a_cycle_and_a_self_loop_are_refused():
    with pytest.raises(PipelineCycle) as caught:
        parse_spec(spec(a={"algorithm": "a/a", "input": "$steps.b.output"},
                        b={"algorithm": "a/b", "input": "$steps.a.output"}))
    assert set(caught.value.details["cycle"]) == {"a", "b"}
    with pytest.raises(PipelineCycle):
        parse_spec(spec(a={"algorithm": "a/a", "input": "$steps.a.output"}))


def test_a_spec_of_the_wrong_shape_names_its_fields():
    with pytest.raises(InvalidPipeline) as caught:
        parse_spec({"steps": {"a": {"algorithm": "not a ref"}}, "extra": 1})
    fields = {p["field"] for p in caught.value.details["problems"]}
    assert fields == {"steps.a.algorithm", "extra"}


def test_toml_and_json_give_the_same_spec():
    toml = '[steps.a]\nalgorithm = "o/a"\n[steps.b]\nalgorithm = "o/b"\ninput = "$steps.a.output"\n'
    json_text = ('{"steps": {"a": {"algorithm": "o/a"}, '
                 '"b": {"algorithm": "o/b", "input": "$steps.a.output"}}}')
    from_toml = parse_spec(load_spec_text(toml, "p.toml")).spec
    from_json = parse_spec(load_spec_text(json_text, "p.json")).spec
    assert spec_digest(from_toml) == spec_digest(from_json)
    with pytest.raises(InvalidPipeline, match="not valid TOML"):
        load_spec_text("[steps", "p.toml")
