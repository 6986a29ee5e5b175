"""`algohost gc` against a real Redis and blob directory: it deletes and says how much."""

import json

import pytest
from click.testing import CliRunner

from algohost.artifacts.store import ArtifactStore
from algohost.cli.common import CliContext
from algohost.cli.main import cli
from algohost.config import Settings

pytestmark = pytest.mark.integration


def test_gc_deletes_unreferenced_blobs_and_reports_the_bytes_freed(redis_client, tmp_path):
    from tests.conftest import TEST_REDIS_URL

    settings = Settings(redis_url=TEST_REDIS_URL, state_dir=str(tmp_path))
    store = ArtifactStore.from_settings(settings, redis_client)
    kept = store.put("alice", [b"kept"], name="kept")
    store.reference("alice", kept.sha256, "model:kept")
    gone = store.put("alice", [b"nobody wants this"], name="gone")

    runner = CliRunner()
    result = runner.invoke(cli, ["gc", "--grace-s", "0", "--json"], obj=CliContext(settings))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"examined": 2, "deleted": 1,
                                         "bytes_freed": gone.size, "references_dropped": 0}
    assert not store.blobs.exists(gone.sha256) and store.blobs.exists(kept.sha256)
    result = runner.invoke(cli, ["gc", "--grace-s", "0"], obj=CliContext(settings))
    assert result.output.strip() == "examined 1 blobs, deleted 0, freed 0 bytes"
