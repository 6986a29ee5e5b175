"""Source archives: the same tree packs to the same bytes; unsafe archives are refused."""

import gzip
import io
import os
import tarfile

import pytest

from algohost.archive import content_hash, make_archive, read_archive
from algohost.errors import InvalidArchive, PayloadTooLarge

LIMIT = 1024 * 1024


def tree(root, files):
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def crafted(*members):
    """A tar.gz built member by member: (TarInfo, content bytes or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def member(name, kind=tarfile.REGTYPE, **attrs):
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def test_same_tree_packs_to_the_same_bytes_whatever_the_mtimes(tmp_path):
    root = tree(tmp_path / "algo", {"algorithm.toml": b"name='a'\n", "pkg/mod.py": b"x = 1\n"})
    first = make_archive(root)
    os.utime(root / "pkg" / "mod.py", (1_000_000, 1_000_000))
    assert make_archive(root) == first


def test_pack_skips_vcs_venvs_bytecode_and_symlinks(tmp_path):
    root = tree(tmp_path / "algo", {
        "main.py": b"def apply(x):\n    return x\n", ".git/HEAD": b"ref", ".venv/bin/python": b"",
        "__pycache__/main.cpython-311.pyc": b"", "stale.pyc": b"", "data/empty.txt": b""})
    (root / "link.py").symlink_to(root / "main.py")
    files = read_archive(make_archive(root), LIMIT)
    assert sorted(files) == ["data/empty.txt", "main.py"]
    assert files["main.py"] == b"def apply(x):\n    return x\n"


def test_pack_keeps_owner_and_time_out_of_the_archive(tmp_path):
    root = tree(tmp_path / "algo", {"main.py": b"x"})
    with tarfile.open(fileobj=io.BytesIO(make_archive(root)), mode="r:gz") as tar:
        for info in tar.getmembers():
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "/etc/passwd"])
def test_paths_that_escape_the_archive_are_refused(name):
    with pytest.raises(InvalidArchive):
        read_archive(crafted((member(name), b"boom")), LIMIT)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_links_and_devices_are_refused(kind):
    info = member("thing", kind, linkname="/etc/passwd")
    with pytest.raises(InvalidArchive):
        read_archive(crafted((info, None)), LIMIT)


def test_leading_dot_slash_is_normalised():
    files = read_archive(crafted((member("./", tarfile.DIRTYPE), None),
                                 (member("./main.py"), b"x")), LIMIT)
    assert files == {"main.py": b"x"}


def test_a_path_that_is_both_file_and_directory_is_refused():
    with pytest.raises(InvalidArchive):
        read_archive(crafted((member("a"), b"x"), (member("a/b"), b"y")), LIMIT)


def test_duplicate_entries_are_refused():
    with pytest.raises(InvalidArchive):
        read_archive(crafted((member("a.py"), b"1"), (member("a.py"), b"2")), LIMIT)


def test_unpacked_size_over_the_limit_is_payload_too_large():
    data = crafted((member("a.bin"), b"\0" * 600), (member("b.bin"), b"\0" * 600))
    with pytest.raises(PayloadTooLarge):
        read_archive(data, 1000)


@pytest.mark.parametrize("data", [b"", b"not an archive", gzip.compress(b"not a tar" * 100)])
def test_anything_but_a_tar_gz_is_an_invalid_archive(data):
    with pytest.raises(InvalidArchive):
        read_archive(data, LIMIT)


def test_truncated_archive_is_invalid(tmp_path):
    root = tree(tmp_path / "algo", {"main.py": os.urandom(4096)})
    with pytest.raises(InvalidArchive):
        read_archive(make_archive(root)[:-200], LIMIT)


def test_content_hash_is_independent_of_order_and_follows_content():
    manifest = {"name": "a", "resources": {"timeout_s": 30}}
    files = {"main.py": b"x", "lib/util.py": b"y"}
    reordered = dict(reversed(list(files.items())))
    base = content_hash(files, manifest)
    assert len(base) == 64
    assert content_hash(reordered, {"resources": {"timeout_s": 30}, "name": "a"}) == base
    assert content_hash({**files, "main.py": b"z"}, manifest) != base
    assert content_hash({"main2.py": b"x", "lib/util.py": b"y"}, manifest) != base
    assert content_hash(files, {**manifest, "name": "b"}) != base


def test_a_compression_bomb_stops_before_it_is_unpacked():
    bomb = gzip.compress(b"\0" * (16 * 1024 * 1024))  # beyond the limit plus tar overhead
    with pytest.raises(PayloadTooLarge):
        read_archive(bomb, 1000)


def test_a_name_that_is_not_utf8_is_refused():
    info = tarfile.TarInfo("ignored")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT,
                      encoding="latin-1") as tar:
        info.name = "caf\xe9.py"
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(InvalidArchive):
        read_archive(buffer.getvalue(), LIMIT)
