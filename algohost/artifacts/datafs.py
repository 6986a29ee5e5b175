"""`data://` as an fsspec filesystem, for clients: pandas.read_csv("data://me/sets/iris.csv").

Registered under the `data` protocol through the `fsspec.specs` entry point. It talks
to the API (ALGOHOST_API_URL, ALGOHOST_API_KEY, read through config.py) and streams each
file through a temporary file: never a whole file in memory, never a store directly.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

from fsspec.spec import AbstractFileSystem

from algohost.cli.client import ApiClient, ApiError
from algohost.config import load_settings

PROTOCOL = "data"


def _split(path: str) -> tuple[str, str, str]:
    owner, _, rest = path.partition("/")
    collection, _, inner = rest.partition("/")
    return owner, collection, inner.strip("/")


class _Upload(io.BufferedWriter):
    """Writes go to a temporary file; closing it uploads the whole file, streamed."""

    def __init__(self, fs: DataFileSystem, path: str) -> None:
        fd, self._temporary = tempfile.mkstemp(prefix="algohost-datafs-")
        super().__init__(io.FileIO(fd, "w+"))
        self._fs, self._path = fs, path

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        try:
            owner, collection, inner = _split(self._path)
            with open(self._temporary, "rb") as f:
                self._fs.client.put_data(owner, collection, inner, f,
                                         os.path.getsize(self._temporary))
            self._fs.invalidate_cache(self._path)
        finally:
            os.unlink(self._temporary)


class DataFileSystem(AbstractFileSystem):  # type: ignore[misc]
    protocol = PROTOCOL
    root_marker = ""

    def __init__(self, api_url: str | None = None, api_key: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        settings = load_settings()
        self.client = ApiClient(api_url or settings.api_url, api_key or settings.api_key)

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path)
        if text.startswith(f"{PROTOCOL}://"):
            text = text[len(PROTOCOL) + 3:]
        return text.strip("/")

    def _files(self, owner: str, collection: str, prefix: str) -> list[dict[str, Any]]:
        try:
            return list(self.client.list_data(owner, collection, prefix)["files"])
        except ApiError as exc:
            if exc.status in (403, 404):
                raise FileNotFoundError(f"data://{owner}/{collection}: {exc.detail}") from exc
            raise

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        owner, collection, prefix = _split(path)
        if not collection:
            entries = [{"name": f"{owner}/{c['name']}", "size": 0, "type": "directory"}
                       for c in self.client.collections(owner)]
        else:
            entries = self._children(owner, collection, prefix)
        return entries if detail else [e["name"] for e in entries]

    def _children(self, owner: str, collection: str, prefix: str) -> list[dict[str, Any]]:
        base = f"{owner}/{collection}"
        children: dict[str, dict[str, Any]] = {}
        for entry in self._files(owner, collection, prefix):
            rest = entry["path"][len(prefix):].lstrip("/") if prefix else entry["path"]
            if entry["path"] == prefix:  # ls of a file is the file
                return [self._file_info(base, entry)]
            head, _, tail = rest.partition("/")
            name = "/".join(filter(None, [base, prefix, head]))
            if tail:
                children.setdefault(name, {"name": name, "size": 0, "type": "directory"})
            else:
                children[name] = self._file_info(base, entry)
        return sorted(children.values(), key=lambda e: e["name"])

    @staticmethod
    def _file_info(base: str, entry: dict[str, Any]) -> dict[str, Any]:
        return {"name": f"{base}/{entry['path']}", "size": int(entry["size"]), "type": "file",
                "sha256": entry["sha256"], "media_type": entry["media_type"]}

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        owner, collection, inner = _split(path)
        if not inner:
            self._files(owner, collection, "")  # FileNotFoundError when not readable
            return {"name": path, "size": 0, "type": "directory"}
        for entry in self._files(owner, collection, inner):
            if entry["path"] == inner:
                return self._file_info(f"{owner}/{collection}", entry)
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(f"data://{path}")

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        path = self._strip_protocol(path)
        if "r" not in mode:
            return _Upload(self, path)
        owner, collection, inner = _split(path)
        spool = tempfile.TemporaryFile(prefix="algohost-datafs-")
        try:
            for chunk in self.client.stream(self.client.data_path(owner, collection, inner)):
                spool.write(chunk)
        except ApiError as exc:
            spool.close()
            if exc.status in (403, 404):
                raise FileNotFoundError(f"data://{path}: {exc.detail}") from exc
            raise
        spool.seek(0)
        return spool

    def rm_file(self, path: str) -> None:
        owner, collection, inner = _split(self._strip_protocol(path))
        self.client.delete_data(owner, collection, inner)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        owner, collection, inner = _split(self._strip_protocol(path))
        if not inner:  # a collection; directories inside one exist through their files
            self.client.make_collection(owner, collection, kwargs.get("access", "private"))
