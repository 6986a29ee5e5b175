"""Models on the real stack: pushed once through the command line, pinned at publish,
mounted read-only in the container."""

import json
import shutil

import pytest
from click.testing import CliRunner

from algohost.cli.common import CliContext
from algohost.cli.main import cli
from tests.stack import TEST_ALGORITHMS, call, publish

pytestmark = pytest.mark.integration


def run_cli(stack, url, *args):
    settings = stack.settings.with_overrides(api_url=url, api_key=stack.key)
    return CliRunner().invoke(cli, list(args), obj=CliContext(settings))


@pytest.fixture(scope="module")
def pushed(stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "weights.bin").write_text("w = [1, 2, 3]")
    bundle = root / "bundle"
    (bundle / "params").mkdir(parents=True)
    (bundle / "params" / "a.txt").write_text("alpha")
    (bundle / "README").write_text("a directory model")
    with stack.serving() as url:
        first = run_cli(stack, url, "models", "push", "weights", str(root / "weights.bin"))
        again = run_cli(stack, url, "models", "push", "weights", str(root / "weights.bin"))
        tree = run_cli(stack, url, "models", "push", "bundle", str(bundle), "--json")
        listing = run_cli(stack, url, "models", "ls", "--json")
    return {"first": first, "again": again, "tree": tree, "listing": listing, "root": root}


def test_a_push_prints_the_digest_and_pushing_the_same_content_uploads_nothing(pushed):
    first, again = pushed["first"], pushed["again"]
    assert first.exit_code == 0, first.output
    ref = first.stdout.strip()
    assert ref.startswith("weights@sha256:") and len(ref) == len("weights@sha256:") + 64
    assert "uploaded 13 bytes" in first.stderr
    assert again.stdout.strip() == ref and "nothing sent" in again.stderr


def test_models_ls_lists_file_and_directory_models(pushed):
    assert pushed["tree"].exit_code == 0, pushed["tree"].output
    tree = json.loads(pushed["tree"].stdout)
    assert (tree["kind"], tree["filename"]) == ("directory", "bundle")
    listed = {m["name"]: m for m in json.loads(pushed["listing"].stdout)}
    assert set(listed) == {"weights", "bundle"}
    assert listed["bundle"]["latest"]["sha256"] == tree["sha256"]


def test_a_model_is_pinned_at_publish_and_mounted_read_only(stack, pushed, tmp_path):
    tree = json.loads(pushed["tree"].stdout)
    source = tmp_path / "modeluser"
    shutil.copytree(TEST_ALGORITHMS / "modeluser", source)
    (source / "algorithm.toml").write_text(
        'name = "modeluser"\nentrypoint = "main:apply"\n[models]\n'
        f'weights = "weights@latest"\nbundle = "bundle@sha256:{tree["sha256"]}"\n')
    ref = publish(stack, source)
    pinned = stack.build_of(ref)["manifest"]["models"]
    assert pinned == {"weights": pushed["first"].stdout.strip(), "bundle": tree["ref"]}
    job = call(stack, ref, None)
    assert job["status"] == "succeeded", job
    assert job["output"] == {"weights": "w = [1, 2, 3]", "bundle": "alpha",
                             "listing": ["README", "params"],
                             "write_file": "OSError", "write_dir": "OSError"}


def test_publishing_with_a_model_that_was_never_pushed_is_refused(stack, tmp_path):
    source = tmp_path / "nomodel"
    shutil.copytree(TEST_ALGORITHMS / "modeluser", source)
    (source / "algorithm.toml").write_text(
        'name = "nomodel"\nentrypoint = "main:apply"\n[models]\nm = "ghost@latest"\n')
    from algohost.archive import make_archive

    response = stack.client.post(f"/v1/algorithms/{stack.owner}/nomodel/versions",
                                 data=make_archive(source),
                                 headers={**stack.auth, "Content-Type": "application/gzip"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_manifest"


def test_another_owner_cannot_use_or_see_a_model(stack, pushed):
    other = {"Authorization": f"Bearer {stack.other_key}"}
    assert stack.client.get("/v1/models", headers=other).get_json() == {"models": []}
    assert stack.client.get(f"/v1/models/{stack.owner}/weights",
                            headers=other).status_code == 403
