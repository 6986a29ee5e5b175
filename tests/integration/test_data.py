"""Data collections on the real stack: the command line both ways, the fsspec filesystem
from a client, and `open("data://...")` inside a call, checked against the caller."""

import io
import json

import fsspec
import pytest
from click.testing import CliRunner

from algohost.artifacts.datafs import DataFileSystem
from algohost.cli.common import CliContext
from algohost.cli.main import cli
from tests.stack import TEST_ALGORITHMS, call, publish

pytestmark = pytest.mark.integration


def run_cli(stack, url, *args, key=None):
    settings = stack.settings.with_overrides(api_url=url, api_key=key or stack.key)
    result = CliRunner().invoke(cli, list(args), obj=CliContext(settings))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def url(stack):
    with stack.serving() as served:
        yield served


def test_cp_ls_cat_and_sync_round_trip(stack, url, tmp_path):
    base = f"data://{stack.owner}/sets"
    run_cli(stack, url, "data", "mkdir", base)
    (tmp_path / "iris.csv").write_text("a,b\n1,2\n")
    assert run_cli(stack, url, "data", "cp", str(tmp_path / "iris.csv"), f"{base}/").strip() \
        == f"{base}/iris.csv"
    listing = json.loads(run_cli(stack, url, "data", "ls", base, "--json"))
    assert [f["path"] for f in listing["files"]] == ["iris.csv"]
    assert run_cli(stack, url, "data", "cat", f"{base}/iris.csv") == "a,b\n1,2\n"
    run_cli(stack, url, "data", "cp", f"{base}/iris.csv", str(tmp_path / "back.csv"))
    assert (tmp_path / "back.csv").read_text() == "a,b\n1,2\n"

    local = tmp_path / "tree"
    (local / "deep").mkdir(parents=True)
    for name, text in {"one.txt": "1", "two.txt": "2", "deep/three.txt": "3"}.items():
        (local / name).write_text(text)
    first = json.loads(run_cli(stack, url, "data", "sync", str(local), f"{base}/tree", "--json"))
    assert (sorted(first["copied"]), first["unchanged"]) == (
        ["tree/deep/three.txt", "tree/one.txt", "tree/two.txt"], 0)
    (local / "two.txt").write_text("two, changed")
    second = json.loads(run_cli(stack, url, "data", "sync", str(local), f"{base}/tree",
                                "--json"))
    assert (second["copied"], second["unchanged"]) == (["tree/two.txt"], 2)
    pulled = tmp_path / "pulled"
    down = json.loads(run_cli(stack, url, "data", "sync", f"{base}/tree", str(pulled), "--json"))
    assert len(down["copied"]) == 3 and (pulled / "two.txt").read_text() == "two, changed"
    again = json.loads(run_cli(stack, url, "data", "sync", f"{base}/tree", str(pulled),
                               "--json"))
    assert (again["copied"], again["unchanged"]) == ([], 3)
    run_cli(stack, url, "data", "rm", f"{base}/iris.csv")
    listing = json.loads(run_cli(stack, url, "data", "ls", base, "--json"))
    assert "iris.csv" not in [f["path"] for f in listing["files"]]


def test_the_fsspec_filesystem_reads_and_writes_from_a_client(stack, url, monkeypatch):
    monkeypatch.setenv("ALGOHOST_API_URL", url)
    monkeypatch.setenv("ALGOHOST_API_KEY", stack.key)
    if fsspec.get_filesystem_class("data") is not DataFileSystem:
        # An installed algohost registers it through its fsspec.specs entry point (which
        # takes `data` over from fsspec's RFC 2397 data: URLs); an older install may not.
        fsspec.register_implementation("data", DataFileSystem, clobber=True)
    run_cli(stack, url, "data", "mkdir", f"data://{stack.owner}/frames")
    with fsspec.open(f"data://{stack.owner}/frames/iris.csv", "w") as f:
        f.write("sepal,petal\n5.1,1.4\n4.9,1.3\n")
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(f"data://{stack.owner}/frames/iris.csv")
    assert list(frame.columns) == ["sepal", "petal"] and len(frame) == 2
    fs = fsspec.filesystem("data")
    assert fs.ls(f"{stack.owner}/frames", detail=False) == [f"{stack.owner}/frames/iris.csv"]
    with pytest.raises(FileNotFoundError):
        fs.cat(f"data://{stack.owner}-other/nothing/here.csv")


def upload(stack, key, uri_path, text):
    owner, collection, path = uri_path.split("/", 2)
    headers = {"Authorization": f"Bearer {key}"}
    response = stack.client.put(f"/v1/data/{owner}/{collection}/{path}",
                                input_stream=io.BytesIO(text.encode()),
                                headers={**headers, "Content-Type": "text/plain",
                                         "Content-Length": str(len(text))})
    assert response.status_code == 201, response.get_json()


def make(stack, key, owner, collection, access):
    response = stack.client.put(f"/v1/data/{owner}/{collection}", json={"access": access},
                                headers={"Authorization": f"Bearer {key}"})
    assert response.status_code in (200, 201), response.get_json()


def test_open_data_inside_a_call_is_checked_against_the_callers_rights(stack):
    reader = publish(stack, TEST_ALGORITHMS / "datareader")
    other = f"{stack.owner}-other"
    make(stack, stack.key, stack.owner, "mine", "private")
    upload(stack, stack.key, f"{stack.owner}/mine/note.txt", "my own words")
    make(stack, stack.other_key, other, "theirs", "private")
    upload(stack, stack.other_key, f"{other}/theirs/secret.txt", "not for alice")

    own = call(stack, reader, {"uri": f"data://{stack.owner}/mine/note.txt"})
    assert own["output"] == {"text": "my own words"}
    assert [a["name"] for a in own["artifacts"]] == ["copies/upper.txt"]
    copy = stack.client.get(own["artifacts"][0]["url"], headers=stack.auth)
    assert copy.data == b"MY OWN WORDS"

    refused = call(stack, reader, {"uri": f"data://{other}/theirs/secret.txt"})
    assert refused["output"]["refused"] == "PermissionError", refused
    make(stack, stack.other_key, other, "theirs", "algorithms")
    still = call(stack, reader, {"uri": f"data://{other}/theirs/secret.txt"})
    assert still["output"]["refused"] == "PermissionError"  # alice's algorithm, not theirs
    make(stack, stack.other_key, other, "theirs", "public")
    allowed = call(stack, reader, {"uri": f"data://{other}/theirs/secret.txt"})
    assert allowed["output"] == {"text": "not for alice"}
    missing = call(stack, reader, {"uri": f"data://{stack.owner}/mine/absent.txt"})
    assert missing["output"]["refused"] == "FileNotFoundError"


def test_another_owner_cannot_list_read_or_write_a_private_collection(stack):
    make(stack, stack.key, stack.owner, "closed", "private")
    upload(stack, stack.key, f"{stack.owner}/closed/a.txt", "a")
    other = {"Authorization": f"Bearer {stack.other_key}"}
    assert stack.client.get(f"/v1/data/{stack.owner}/closed", headers=other).status_code == 404
    assert stack.client.get(f"/v1/data/{stack.owner}/closed/a.txt",
                            headers=other).status_code == 404
    response = stack.client.put(f"/v1/data/{stack.owner}/closed/b.txt", data=b"b",
                                headers={**other, "Content-Type": "text/plain"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "data_forbidden"
    bad = stack.client.get(f"/v1/data/{stack.owner}/closed/..%2Fx", headers=stack.auth)
    assert bad.status_code in (400, 404)
