"""`algohost init`, and what `run` refuses before it needs an engine."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from algohost.cli.common import CliContext
from algohost.cli.main import cli
from algohost.config import load_settings


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    settings = load_settings(env or {})
    return CliRunner().invoke(cli, list(args), obj=CliContext(settings))


def test_init_writes_manifest_entrypoint_tests_and_readme(tmp_path: Path) -> None:
    result = invoke("init", "hello", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    names = sorted(p.relative_to(tmp_path / "hello").as_posix()
                   for p in (tmp_path / "hello").rglob("*") if p.is_file())
    assert names == ["README.md", "algorithm.toml", "main.py", "tests/test_main.py"]


def test_init_model_template_loads_from_models(tmp_path: Path) -> None:
    assert invoke("init", "scorer", "--template", "model", "--dir", str(tmp_path)).exit_code == 0
    assert "/models/" in (tmp_path / "scorer" / "main.py").read_text()


def test_init_refuses_to_overwrite_a_directory(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "mine.txt").write_text("keep")
    result = invoke("init", "hello", "--dir", str(tmp_path))
    assert result.exit_code == 3
    assert "already exists" in result.stderr
    assert [p.name for p in (tmp_path / "hello").iterdir()] == ["mine.txt"]


def test_init_refuses_a_name_the_platform_would_refuse(tmp_path: Path) -> None:
    result = invoke("init", "Not_Valid!", "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert "algorithm name" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_without_a_docker_engine_says_how_to_get_one(tmp_path: Path) -> None:
    assert invoke("init", "hello", "--dir", str(tmp_path)).exit_code == 0
    missing = f"unix://{tmp_path}/no-docker.sock"
    result = invoke("run", str(tmp_path / "hello"), "{}", env={"ALGOHOST_DOCKER_URL": missing})
    assert result.exit_code == 1
    assert "Install Docker Engine" in result.stderr


def test_run_refuses_a_secret_the_manifest_does_not_name(tmp_path: Path) -> None:
    assert invoke("init", "hello", "--dir", str(tmp_path)).exit_code == 0
    (tmp_path / "token").write_text("x")
    result = invoke("run", str(tmp_path / "hello"), "{}", "--secret", f"TOKEN=@{tmp_path}/token")
    assert result.exit_code == 2
    assert "not in [secrets] names" in result.stderr
