"""The API under fuzzing: every operation of /v1/openapi.json, with a valid key, against a
real Redis; no answer may be a 5xx or differ from what the document says.

Bounded and derandomized here, so it runs in every `make test` the same way; set
ALGOHOST_FUZZ_EXAMPLES (examples per operation) to run it longer.
"""

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from algohost.api import create_app
from algohost.archive import make_archive
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher
from algohost.secrets.memory import MemorySecrets
from algohost.store import keys
from algohost.store.keys import KeyStore, new_key
from algohost.store.registry import Registry
from tests.integration.conftest import API_REDIS_URL

pytestmark = pytest.mark.integration

# Read here, by the test alone: the fuzz run's size is not a setting of the service.
EXAMPLES = int(os.environ.get("ALGOHOST_FUZZ_EXAMPLES", "12"))
STATEFUL_EXAMPLES = max(EXAMPLES // 2, 4)
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                         database=None, suppress_health_check=list(HealthCheck))


# The app is made once, at import: serving its document touches no service, and the
# schema is read from the app itself, in-process. Each test seeds a flushed database
# with KEY, the one key the fuzzer presents as bearerAuth (and negates to test 401s).
# No worker runs, so a call never finishes: max_wait_s=0 keeps `Prefer: wait` from waiting.
KEY = new_key()
APP = create_app(Settings(redis_url=API_REDIS_URL, max_wait_s=0),
                 dispatcher=RecordingDispatcher(), docker_ping=lambda: True,
                 secrets=MemorySecrets())
CONFIG = schemathesis.Config.from_dict({
    "auth": {"openapi": {"bearerAuth": {"bearer": KEY}}},
    # Query strings ignore unknown parameters (the document does not forbid them).
    "generation": {"allow-extra-parameters": False},
    # A valid submit whose Idempotency-Key already named another request is refused with
    # 422 idempotency_key_reused: the fuzzer sends the document's one example key often.
    "checks": {"positive_data_acceptance": {"expected-statuses": [
        "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]}},
})
schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", APP, config=CONFIG)


def _raw_bytes(value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


@schemathesis.serializer("application/gzip", "application/x-tar+gzip")
def as_raw_bytes(context, value):
    """Archives are documented as strings: sent as their UTF-8 bytes (never a valid one)."""
    return _raw_bytes(value)


@schemathesis.serializer("application/x-ndjson")
def as_json_lines(context, value):
    """A batch's JSON Lines body is documented as the list of its inputs, one per line."""
    if isinstance(value, list):
        return "\n".join(json.dumps(item) for item in value).encode("utf-8", "surrogatepass")
    return _raw_bytes(value)


def _literal(template):
    """A template whose strings are all literal: a leading '$' escaped as '$$'."""
    if isinstance(template, str):
        return "$" + template if template.startswith("$") else template
    if isinstance(template, dict):
        return {key: _literal(value) for key, value in template.items()}
    if isinstance(template, list):
        return [_literal(value) for value in template]
    return template


def _drawable_graph(spec):
    """A pipeline spec whose `after` lists name only earlier steps: a graph with no unknown
    step and no cycle (which the spec's schema cannot state, and which are 400s)."""
    steps = spec.get("steps")
    if not isinstance(steps, dict):
        return spec
    seen = []
    for step in steps.values():
        if isinstance(step, dict):
            if isinstance(step.get("after"), list):
                step["after"] = [name for name in step["after"] if name in seen]
            if "input" in step:
                step["input"] = _literal(step["input"])
        seen = list(steps)[:len(seen) + 1]
    if "output" in spec:
        spec["output"] = _literal(spec["output"])
    return spec


@schema.hook
def map_case(context, case):
    """A JSON Lines batch takes its options from the query string, with two rules OpenAPI
    cannot state (a parameter required by the body's media type, one needing another):
    such cases get the seeded algorithm, and webhook_events only with a webhook. A
    pipeline spec's graph must be drawable (see _drawable_graph)."""
    if case.operation.path == "/v1/pipelines/{owner}/{name}" and isinstance(case.body, dict):
        case.body = _drawable_graph(case.body)
    if case.media_type == "application/x-ndjson":
        query = {"algorithm": "alice/hello@latest", **(case.query or {})}
        if "webhook" not in query:
            query.pop("webhook_events", None)
        case.query = query
    return case


def seed(client, root):
    """KEY is alice's, and alice/hello@0.1.0 is built, so that calls of it are accepted."""
    auth = {"Authorization": f"Bearer {KeyStore(client).create('alice')}"}
    root.mkdir(exist_ok=True)
    (root / "algorithm.toml").write_text('name = "hello"\nentrypoint = "main:apply"\n')
    (root / "main.py").write_text("def apply(x):\n    return x\n")
    published = APP.test_client().post("/v1/algorithms/alice/hello/versions",
                                       data=make_archive(root),
                                       headers={**auth, "Content-Type": "application/gzip"})
    assert published.status_code == 202, published.get_json()
    Registry(client).mark_succeeded(published.get_json()["build"]["id"])


@pytest.fixture
def seeded(api_redis, tmp_path, monkeypatch):
    monkeypatch.setattr(keys, "new_key", lambda: KEY)
    seed(api_redis, tmp_path / "hello")
    return api_redis, tmp_path


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_as_documented(case, seeded):
    response = case.call()
    if _broke_a_sweep_rule(case, response):
        # A sweep's rules that JSON Schema cannot state (a range's low below its high, a
        # grid within ALGOHOST_MAX_SWEEP_TRIALS) refuse schema-valid bodies, each with the
        # code of the rule it broke (tests/integration/test_sweeps.py holds them).
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
    else:
        case.validate_response(response)


SWEEP_RULES = {"invalid_parameter_range", "grid_not_enumerable", "grid_too_large",
               "too_many_trials"}


def _broke_a_sweep_rule(case, response):
    if (case.method, case.path) != ("POST", "/v1/sweeps") or response.status_code != 400:
        return False
    return response.json()["error"]["code"] in SWEEP_RULES


class LinkedOperations(schema.as_state_machine()):
    store = None  # (redis client, a directory) of the running test

    def setup(self):
        # Every run of the machine starts from the same seeded database: what an earlier
        # run made (secrets, batches, deleted versions) would change which links can be
        # followed, and Hypothesis refuses a strategy that depends on outside state.
        client, root = type(self).store
        client.flushdb()
        seed(client, root / "hello")

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        excluded = [positive_data_acceptance] if _broke_a_sweep_rule(case, response) else None
        case.validate_response(response, additional_checks=additional_checks,
                               excluded_checks=excluded, transport_kwargs=kwargs or None,
                               recorder=getattr(self, "recorder", None))


def test_linked_operations_answer_as_documented(seeded):
    LinkedOperations.store = seeded
    LinkedOperations.run(settings=settings(FUZZ_SETTINGS, max_examples=STATEFUL_EXAMPLES,
                                         stateful_step_count=6))
