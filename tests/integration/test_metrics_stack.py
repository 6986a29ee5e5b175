"""Metrics across builds and the usage ledger on the real stack: two builds of one algorithm
that differ in latency by design, called through the API, run in Docker by a real worker."""

import shutil

import pytest

from algohost.store import connect
from algohost.store.keys import KeyStore
from algohost.store.limits import LimitStore
from algohost.store.usage import MiB, UsageLedger
from tests.stack import TEST_ALGORITHMS, call, publish
from tests.waiting import eventually

CALLS = 12
MEASURED = "paced_measured"


@pytest.fixture(scope="module")
def builds(stack, tmp_path_factory):
    """alice/paced's code twice, as an algorithm of its own that no other test calls (a
    build's metrics count every call of it): 20 ms a call, then 120 ms."""
    refs = []
    for delay in ("0.02", "0.12"):
        source = tmp_path_factory.mktemp(f"paced-{delay}") / "paced"
        source.mkdir()
        for item in (TEST_ALGORITHMS / "paced").iterdir():
            text = item.read_text().replace("DELAY_S = 0.02", f"DELAY_S = {delay}")
            text = text.replace('name = "paced"', f'name = "{MEASURED}"')
            (source / item.name).write_text(text)
        refs.append(publish(stack, source))
    jobs = {ref: [call(stack, ref, n) for n in range(CALLS)] for ref in refs}
    return refs, jobs


def metrics_of(stack, query):
    response = stack.client.get(f"/v1/algorithms/{stack.owner}/{MEASURED}/metrics{query}",
                                headers=stack.auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_slower_build_shows_its_latency_in_the_comparison(stack, builds):
    refs, jobs = builds
    assert all(job["status"] == "succeeded" for ran in jobs.values() for job in ran)
    fast_v, slow_v = (ref.split("@")[1] for ref in refs)

    def counted():
        reply = metrics_of(stack, f"?versions={fast_v},{slow_v}")
        return reply if all(b["calls"] == CALLS for b in reply["builds"]) else None

    fast, slow = eventually(counted, 30, "both builds' calls to be counted")["builds"]
    resolution = 0.95  # a percentile is read from buckets 5% wide
    assert 20 * resolution <= fast["run_ms"]["p50"] < 120 * resolution <= slow["run_ms"]["p50"]
    assert slow["run_ms"]["p50"] / fast["run_ms"]["p50"] > 2
    assert slow["total_ms"]["p50"] > fast["total_ms"]["p50"]  # a tail is the host's load
    for build, ref in ((fast, refs[0]), (slow, refs[1])):
        assert build["error_rate"] == 0 and build["timeout_rate"] == 0
        cold = sum(job["warm"] is False for job in jobs[ref])  # none if a container was ready
        assert build["cold_start_share"] == pytest.approx(cold / CALLS) and cold < CALLS
        assert build["peak_memory_bytes"]["max"] > 0
    assert fast["custom"]["delay_ms"]["mean"] == pytest.approx(20.0)
    assert slow["custom"]["delay_ms"]["mean"] == pytest.approx(120.0)


def test_a_job_keeps_what_its_call_reported_and_a_bad_name_is_refused_inside(stack, builds):
    refs, jobs = builds
    assert jobs[refs[0]][0]["custom_metrics"] == {"delay_ms": 20.0}
    refused = call(stack, refs[0], "bad-metric")
    assert refused["status"] == "succeeded"
    assert "a metric name is" in refused["output"]["refused"]
    assert refused["custom_metrics"] == {"delay_ms": 20.0}


def test_the_ledger_holds_each_job_as_its_record_says(stack, builds):
    refs, jobs = builds
    ledger = UsageLedger.from_settings(connect(stack.settings), stack.settings)
    for ran in jobs.values():
        for job in ran:
            entry = eventually(lambda job=job: ledger.entry(job["id"]), 30)
            metrics = stack.get_job(job["id"])["metrics"]
            assert entry["payer"] == entry["payee"] == stack.owner
            assert f"{entry['algorithm']}@{entry['version']}" == job["algorithm"]
            assert entry["compute_us"] == round(metrics["run_ms"] * 1000)
            assert entry["memory_mib_ms"] == round(
                metrics["peak_memory_bytes"] * metrics["run_ms"] / MiB)
    report = stack.client.get("/v1/usage?group_by=version", headers=stack.auth).get_json()
    by_version = {line["version"]: line for line in report["lines"]}
    for ref in refs:
        ran = jobs[ref]
        line = by_version[ref.split("@")[1]]
        slept_s = (0.02 if ref == refs[0] else 0.12) * len(ran)
        assert line["calls"] >= len(ran) and line["compute_s"] >= slept_s


def test_another_owners_call_pays_a_royalty_then_meets_its_budget(stack, tmp_path):
    """carol calls alice's public algorithm: the ledger names carol as payer and alice as
    payee with the version's royalty; once carol's day's compute is spent, 402."""
    source = tmp_path / "royal"
    source.mkdir()
    (source / "algorithm.toml").write_text(
        'name = "royal"\nentrypoint = "main:apply"\npython = "3.11"\n'
        'visibility = "public"\nroyalty_micros = 2500\n')
    (source / "main.py").write_text((TEST_ALGORITHMS / "paced" / "main.py").read_text())
    ref = publish(stack, source)
    carol = {"Authorization": f"Bearer {KeyStore(stack.redis).create('carol')}"}
    LimitStore(stack.redis, stack.settings).set("carol", compute_s_per_day=0.001)

    def submit():
        return stack.client.post("/v1/jobs", json={"algorithm": ref, "input": 1},
                                 headers={**carol, "Prefer": "wait=60"})

    first = submit()
    assert first.status_code in (200, 202), first.get_json()
    job_id = first.get_json()["id"]

    def succeeded():
        job = stack.client.get(f"/v1/jobs/{job_id}", headers=carol).get_json()
        return job if job["status"] == "succeeded" else None

    job = eventually(succeeded, 60, "carol's call to succeed")
    ledger = UsageLedger.from_settings(connect(stack.settings), stack.settings)
    entry = eventually(lambda: ledger.entry(job_id), 30)
    assert (entry["payer"], entry["payee"], entry["royalty_micros"]) == ("carol", "alice", 2500)
    assert entry["compute_us"] == round(job["metrics"]["run_ms"] * 1000) >= 20_000
    refused = submit()
    assert refused.status_code == 402, refused.get_json()
    assert refused.get_json()["error"]["code"] == "budget_exhausted"
    paid = stack.client.get("/v1/usage?group_by=algorithm&role=payee", headers=stack.auth)
    line = next(x for x in paid.get_json()["lines"] if x["algorithm"] == "alice/royal")
    assert (line["calls"], line["royalty_micros"]) == (1, 2500)
    owed = stack.client.get("/v1/usage?group_by=", headers=carol).get_json()["total"]
    assert (owed["calls"], owed["royalty_micros"]) == (1, 2500)


def test_an_algorithms_calls_meet_the_callers_budget_too(stack, tmp_path):
    """erin's call of a public algorithm is accepted with nothing spent; its first nested
    call runs and spends the day's budget; its second is refused inside, 402."""
    source = tmp_path / "nester"
    shutil.copytree(TEST_ALGORITHMS / "nested", source)
    (source / "algorithm.toml").write_text(
        'name = "nester"\nentrypoint = "main:apply"\npython = "3.11"\nvisibility = "public"\n')
    ref = publish(stack, source)
    erin = {"Authorization": f"Bearer {KeyStore(stack.redis).create('erin')}"}
    LimitStore(stack.redis, stack.settings).set("erin", compute_s_per_day=0.000001)
    response = stack.client.post("/v1/jobs", headers=erin, json={
        "algorithm": ref, "input": {"ref": ref.split("@")[0], "fan": 2, "catch": True}})
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]

    def finished():
        job = stack.client.get(f"/v1/jobs/{job_id}", headers=erin).get_json()
        return job if job["status"] not in ("queued", "running") else None

    job = eventually(finished, 120, lambda: f"erin's call to finish: {stack.worker_log()}")
    assert job["status"] == "succeeded", job
    assert (job["output"]["code"], job["output"]["status"]) == ("budget_exhausted", 402)
    assert len(job["children"]) == 1


def test_a_batchs_inputs_are_calls_in_usage_and_metrics_and_meet_the_budget(stack, tmp_path):
    """dave runs a batch of alice's public algorithm: each input is one call in his usage,
    in alice's earnings with the royalty, and in the build's metrics, its compute the
    worker's measurements summed exactly; once his day's compute is spent, a batch is 402."""
    source = tmp_path / "batched"
    source.mkdir()
    (source / "algorithm.toml").write_text(
        'name = "batched"\nentrypoint = "main:apply"\npython = "3.11"\n'
        'visibility = "public"\nroyalty_micros = 300\n')
    (source / "main.py").write_text(  # a batch's input cannot log a metric: paced would fail
        "import time\n\n\ndef apply(x):\n    time.sleep(0.02)\n    return x\n")
    ref = publish(stack, source)
    dave = {"Authorization": f"Bearer {KeyStore(stack.redis).create('dave')}"}
    LimitStore(stack.redis, stack.settings).set("dave", compute_s_per_day=0.001)  # 1 ms

    def submit():
        return stack.client.post("/v1/batches", json={"algorithm": ref, "inputs": [1, 2, 3, 4, 5]},
                                 headers=dave)

    response = submit()  # nothing spent yet: accepted, and it runs to its end
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["id"]

    def completed():
        batch = stack.client.get(f"/v1/batches/{batch_id}", headers=dave).get_json()
        return batch if batch["status"] == "completed" else None

    batch = eventually(completed, 120, lambda: f"dave's batch to complete: {stack.worker_log()}")
    results = stack.client.get(f"/v1/batches/{batch_id}/results",
                               headers=dave).get_json()["results"]
    assert batch["counts"]["succeeded"] == 5, results
    results = stack.client.get(f"/v1/batches/{batch_id}/results",
                               headers=dave).get_json()["results"]
    compute_us = sum(round(r["metrics"]["run_ms"] * 1000) for r in results)
    owed = stack.client.get("/v1/usage?group_by=", headers=dave).get_json()["total"]
    assert (owed["calls"], owed["royalty_micros"], owed["compute_us"]) == (5, 1500, compute_us)
    assert compute_us >= 5 * 20_000  # each input sleeps 20 ms
    paid = stack.client.get("/v1/usage?group_by=algorithm&role=payee", headers=stack.auth)
    line = next(x for x in paid.get_json()["lines"] if x["algorithm"] == "alice/batched")
    assert (line["calls"], line["royalty_micros"], line["compute_us"]) == (5, 1500, compute_us)
    metrics = stack.client.get("/v1/algorithms/alice/batched/metrics",
                               headers=stack.auth).get_json()
    (build,) = metrics["builds"]
    assert build["calls"] == 5 and build["error_rate"] == 0
    assert build["run_ms"]["p50"] >= 20 * 0.95
    refused = submit()
    assert refused.status_code == 402, refused.get_json()
    assert refused.get_json()["error"]["code"] == "budget_exhausted"
