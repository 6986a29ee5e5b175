"""Pages that change things: an algorithm's secrets (names, versions and dates; a value goes
in and never comes back, not even in the reply to setting it) and data collections.
"""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, render_template, request, url_for

from algohost.api import data as data_api
from algohost.api import secrets as secrets_api
from algohost.api.artifacts import UPLOAD
from algohost.api.routing import open_upload, validate
from algohost.api.schemas import (
    CollectionList,
    CollectionMake,
    CollectionView,
    DataFileView,
    DataListing,
    DataListQuery,
)
from algohost.console.blueprint import bp
from algohost.console.calls import answer, replied, stream
from algohost.console.session import current_session


def _secrets_page(owner: str, name: str, notice: str = "", status: int = 200) -> Any:
    listing = answer(secrets_api.list_secrets, secrets_api.SecretList, owner=owner, name=name)
    return render_template("secrets.html", algo_owner=owner, name=name,
                           secrets=listing.secrets, notice=notice,
                           owner=current_session().owner), status


@bp.route("/algorithms/<owner>/<name>/secrets")
def secrets(owner: str, name: str) -> Any:
    done = request.args.get("done", "")
    return _secrets_page(owner, name, done)


@bp.route("/algorithms/<owner>/<name>/secrets", methods=["POST"])
def set_secret(owner: str, name: str) -> Any:
    secret = request.form.get("name", "").strip()
    value = request.form.get("value", "")
    # The form's body is not JSON, so the view takes the value as raw text, as the API does.
    info, _ = replied(secrets_api.put_secret, secrets_api.SecretInfo, owner=owner, name=name,
                      secret=secret, body=value.encode("utf-8"))
    return redirect(url_for("console.secrets", owner=owner, name=name,
                            done=f"{info.name} is set (version {info.version})"), 303)


@bp.route("/algorithms/<owner>/<name>/secrets/<secret>/delete", methods=["POST"])
def delete_secret(owner: str, name: str, secret: str) -> Any:
    answer(secrets_api.delete_secret, secrets_api.SecretDeleted, owner=owner, name=name,
           secret=secret)
    return redirect(url_for("console.secrets", owner=owner, name=name,
                            done=f"{secret} is deleted"), 303)


@bp.route("/data")
def collections() -> Any:
    owner = current_session().owner
    found = answer(data_api.list_collections, CollectionList, owner=owner).collections
    return render_template("collections.html", collections=found, owner=owner)


@bp.route("/data", methods=["POST"])
def make_collection() -> Any:
    owner = current_session().owner
    body = validate(CollectionMake, {"access": request.form.get("access", "private")}, "form")
    made = answer(data_api.make_collection, CollectionView, owner=owner,
                  collection=request.form.get("name", "").strip(), body=body)
    return redirect(url_for("console.collection", owner=owner, collection=made.name), 303)


@bp.route("/data/<owner>/<collection>")
def collection(owner: str, collection: str) -> Any:
    listing = answer(data_api.list_collection, DataListing, owner=owner, collection=collection,
                     query=validate(DataListQuery, {"prefix": request.args.get("prefix", "")},
                                    "query"))
    return render_template("collection.html", listing=listing, owner=current_session().owner,
                           prefix=request.args.get("prefix", ""))


@bp.route("/data/<owner>/<collection>/files/<path:path>", methods=["PUT"])
def upload_file(owner: str, collection: str, path: str) -> Any:
    """The page's script sends the file's bytes as the body, with the file's own media type."""
    entry = answer(data_api.put_file, DataFileView, owner=owner, collection=collection,
                   path=path, body=open_upload(UPLOAD))
    return entry.model_dump(), 201


@bp.route("/data/<owner>/<collection>/files/<path:path>")
def download_file(owner: str, collection: str, path: str) -> Response:
    reply = stream(data_api.get_file, owner=owner, collection=collection, path=path)
    headers = {**reply.headers,
               "Content-Disposition": f'attachment; filename="{_file_name(path)}"'}
    return Response(reply.chunks, headers=headers, mimetype=reply.media_type,
                    direct_passthrough=True)


@bp.route("/data/<owner>/<collection>/files/<path:path>/delete", methods=["POST"])
def delete_file(owner: str, collection: str, path: str) -> Any:
    answer(data_api.delete_file, DataFileView, owner=owner, collection=collection, path=path)
    return redirect(url_for("console.collection", owner=owner, collection=collection), 303)


def _file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1].replace('"', "").replace("\\", "") or "download"
