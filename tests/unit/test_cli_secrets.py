"""`algohost secrets` against a stub HTTP server: where the value comes from, what is printed."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from algohost.cli.common import CliContext
from algohost.cli.main import cli
from algohost.config import Settings

META = {"name": "DB_PASSWORD", "version": 2, "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-02T00:00:00.000Z"}


@pytest.fixture
def stub():
    seen, replies = [], {}

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path, body))
            status, reply = replies.get((self.command, self.path),
                                        (404, {"error": {"code": "not_found", "message": "no"}}))
            raw = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_PUT = do_DELETE = _serve

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen, replies
    server.shutdown()
    server.server_close()


def run(url, args, stdin=None):
    settings = Settings(api_url=url, api_key="k")
    return CliRunner().invoke(cli, ["secrets", *args], obj=CliContext(settings), input=stdin)


PATH = "/v1/algorithms/alice/hello/secrets"


def test_set_reads_the_value_from_stdin_and_never_prints_it(stub):
    url, seen, replies = stub
    replies[("PUT", f"{PATH}/DB_PASSWORD")] = (200, META)
    result = run(url, ["set", "alice/hello", "DB_PASSWORD"], stdin="hunter2\n")
    assert result.exit_code == 0, result.output
    assert json.loads(seen[0][2]) == {"value": "hunter2"}
    assert "hunter2" not in result.output
    assert "version 2" in result.output


def test_set_takes_no_value_argument(stub):
    url, seen, _ = stub
    result = run(url, ["set", "alice/hello", "DB_PASSWORD", "hunter2"])
    assert result.exit_code == 2
    assert not seen


def test_an_empty_value_is_refused_before_any_request(stub):
    url, seen, _ = stub
    result = run(url, ["set", "alice/hello", "X"], stdin="")
    assert result.exit_code == 2 and not seen


def test_list_prints_names_and_versions_and_json_with_the_flag(stub):
    url, _, replies = stub
    replies[("GET", PATH)] = (200, {"secrets": [META]})
    human = run(url, ["list", "alice/hello"])
    assert "DB_PASSWORD" in human.output and "2" in human.output
    machine = run(url, ["list", "alice/hello", "--json"])
    assert json.loads(machine.stdout) == [META]


def test_delete_of_a_missing_secret_exits_1_with_the_api_code(stub):
    url, _, replies = stub
    replies[("DELETE", f"{PATH}/GONE")] = (404, {"error": {"code": "secret_not_found",
                                                          "message": "not set"}})
    result = run(url, ["delete", "alice/hello", "GONE"])
    assert result.exit_code == 1
    assert "secret_not_found" in result.output


def test_a_versioned_reference_is_a_usage_error(stub):
    url, seen, _ = stub
    assert run(url, ["list", "alice/hello@1.0.0"]).exit_code == 2 and not seen
