"""`dev up` warns when the Redis it finds keeps nothing on disk: a restart would lose
every queued job. Each test runs its own redis-server, configured one way or the other."""

import subprocess
from pathlib import Path

import pytest

from algohost.config import Settings
from algohost.dev import stack
from algohost.dev.commands import PERSISTENCE_WARNING, ensure_redis, parts
from tests.stack import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path):
    started = []

    def start(*persistence: str) -> str:
        port = free_port()
        directory = tmp_path / str(port)
        directory.mkdir()
        proc = subprocess.Popen([stack.executable("redis-server"), "--port", str(port),
                                 "--bind", "127.0.0.1", "--dir", str(directory), *persistence],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        url = f"redis://127.0.0.1:{port}/0"
        assert stack.wait_for(lambda: stack.redis_answers(url), 10), "redis-server did not start"
        return url

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


def test_a_redis_without_aof_or_snapshots_keeps_nothing(own_redis):
    assert stack.redis_keeps_nothing(own_redis("--save", "", "--appendonly", "no"))


@pytest.mark.parametrize("persistence", [("--save", "", "--appendonly", "yes"),
                                         ("--save", "60 1", "--appendonly", "no")])
def test_aof_or_snapshots_count_as_persisting(own_redis, persistence):
    assert not stack.redis_keeps_nothing(own_redis(*persistence))


def test_dev_up_warns_about_a_redis_that_keeps_nothing(own_redis, tmp_path, capsys):
    url = own_redis("--save", "", "--appendonly", "no")
    ensure_redis(Settings(redis_url=url), parts(tmp_path)["redis"])
    assert PERSISTENCE_WARNING.split(":")[0] in " ".join(capsys.readouterr().err.split())


def test_dev_up_is_quiet_about_a_redis_with_aof(own_redis, tmp_path, capsys):
    url = own_redis("--save", "", "--appendonly", "yes")
    ensure_redis(Settings(redis_url=url), parts(tmp_path)["redis"])
    assert "warning" not in capsys.readouterr().err
