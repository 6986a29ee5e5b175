"""`algohost publish --git`: the archive of one commit, made here with `git archive`.

The command line packs the commit and sends it as any publish, with the commit id and ref
as metadata; the server never clones. A server that fetched URLs its callers name could be
aimed at hosts only it can reach; this way the API needs no git and no network access,
and the working tree's uncommitted changes never slip into a version.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click

from algohost.cli.archive import pack_directory, read_name
from algohost.cli.common import err

GIT_TIMEOUT_S = 600  # a clone of a large repository over a slow link


@dataclass(frozen=True)
class GitSource:
    name: str
    archive: bytes
    commit: str
    ref: str
    directory: Path | None  # the local checkout's directory of the algorithm, if local


def git(*args: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise click.ClickException("`algohost publish --git` needs git installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise click.ClickException(f"git {args[0]} did not finish in {GIT_TIMEOUT_S} s") \
            from exc
    if done.returncode != 0:
        raise click.ClickException(f"git {args[0]} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


@contextmanager
def repository(location: str) -> Iterator[tuple[Path, bool]]:
    """A local repository's path, or a bare clone of a URL in a temporary directory."""
    path = Path(location).expanduser()
    if path.exists():
        yield Path(git("rev-parse", "--show-toplevel", cwd=path).strip()), True
        return
    with tempfile.TemporaryDirectory(prefix="algohost-git-") as tmp:
        err.print(f"cloning {location}")
        # `--` keeps a location starting with '-' from being read as an option.
        git("clone", "--quiet", "--bare", "--", location, tmp)
        yield Path(tmp), False


def subdir_path(subdir: str) -> str:
    """The algorithm's directory inside the repository; never outside it."""
    path = PurePosixPath(subdir.strip("/") or ".")
    if path.is_absolute() or ".." in path.parts:
        raise click.BadParameter(f"{subdir!r} leaves the repository", param_hint="--subdir")
    return path.as_posix()


def read_git_source(location: str, ref: str | None, subdir: str) -> GitSource:
    """The commit `ref` names (HEAD by default) of `location`, packed as `publish` packs a
    directory, limited to `subdir`."""
    inside = subdir_path(subdir)
    with repository(location) as (repo, local):
        commit = git("rev-parse", "--verify", "--end-of-options", f"{ref or 'HEAD'}^{{commit}}",
                     cwd=repo).strip()
        if ref:
            named = ref
        elif _on_branch(repo):
            named = git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=repo).strip()
        else:
            named = "HEAD"
        if local and git("status", "--porcelain", "--", inside, cwd=repo).strip():
            err.print(f"[yellow]uncommitted changes in {repo / inside} are not published: "
                      f"the version is {commit[:12]}[/yellow]")
        tree = commit if inside == "." else f"{commit}:{inside}"
        with tempfile.TemporaryDirectory(prefix="algohost-src-") as tmp:
            tar_path = Path(tmp) / "source.tar"
            git("archive", "--format=tar", f"--output={tar_path}", tree, cwd=repo)
            root = Path(tmp) / "tree"
            root.mkdir()
            with tarfile.open(tar_path) as tar:
                tar.extractall(root, filter="data")  # no links out, no devices
            name = read_name(root)
            archive = pack_directory(root)
    return GitSource(name=name, archive=archive, commit=commit, ref=named,
                     directory=(repo / inside) if local else None)


def _on_branch(repo: Path) -> bool:
    done = subprocess.run(["git", "symbolic-ref", "--quiet", "HEAD"], cwd=repo,
                          capture_output=True, check=False)
    return done.returncode == 0
