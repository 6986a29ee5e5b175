"""Canceling a job through the API cancels the calls its algorithm made, down the chain,
and leaves finished ones as they are (real Redis, no worker)."""

import pytest

from algohost.store.jobs import JobRecord, JobStatus
from tests.integration.test_api_redis import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def api(api_redis, api_redis_url):
    return Api(api_redis, api_redis_url)


def stored(api, job_id, status, children=(), parent=None):
    api.jobs.create(JobRecord(id=job_id, owner="alice", status=status,
                              children=list(children), parent_job=parent,
                              depth=0 if parent is None else 1))


def test_canceling_a_parent_cancels_its_running_descendants_but_not_finished_ones(api):
    stored(api, "j_parent", JobStatus.RUNNING, children=["j_done", "j_child"])
    stored(api, "j_done", JobStatus.SUCCEEDED, parent="j_parent")
    stored(api, "j_child", JobStatus.RUNNING, children=["j_grandchild"], parent="j_parent")
    stored(api, "j_grandchild", JobStatus.QUEUED, parent="j_child")
    response = api.client.post("/v1/jobs/j_parent/cancel", headers=api.alice)
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    assert response.get_json()["children"] == ["j_done", "j_child"]
    assert api.jobs.get("j_done").status is JobStatus.SUCCEEDED
    for job_id in ("j_child", "j_grandchild"):
        record = api.jobs.get(job_id)
        assert record.status is JobStatus.CANCELED and record.reason == "parent_canceled"
