"""Batches: a list with progress bars that move without a reload, and one batch with its
counts and a page of results, through the API's batch views."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for

from algohost.api import batches as batches_api
from algohost.api.routing import validate
from algohost.console.blueprint import bp
from algohost.console.calls import answer
from algohost.console.session import current_session
from algohost.public import Batch, BatchResults

RESULTS_SHOWN = 100


def _row(batch: Batch) -> dict[str, Any]:
    finished = batch.total - batch.counts.pending
    return {"id": batch.id, "algorithm": batch.algorithm, "status": batch.status.value,
            "total": batch.total, "finished": finished, "progress": batch.progress,
            "failed": batch.counts.failed + batch.counts.timed_out,
            "created_at": batch.created_at, "url": url_for("console.batch", batch_id=batch.id)}


def _rows() -> list[dict[str, Any]]:
    listing = answer(batches_api.list_batches, batches_api.BatchList,
                     query=batches_api.BatchListQuery(limit=100))
    return [_row(batch) for batch in listing.batches]


@bp.route("/batches")
def batches() -> str:
    return render_template("batches.html", batches=_rows(), owner=current_session().owner)


@bp.route("/batches.json")
def batches_json() -> dict[str, Any]:
    return {"batches": _rows()}


@bp.route("/batches/<batch_id>")
def batch(batch_id: str) -> str:
    found = answer(batches_api.get_batch, Batch, batch_id=batch_id)
    cursor = request.args.get("cursor", "0")
    results = answer(batches_api.batch_results, BatchResults, batch_id=batch_id,
                     query=validate(batches_api.ResultsQuery,
                                    {"limit": RESULTS_SHOWN, "cursor": cursor}, "query"))
    return render_template("batch.html", batch=found, row=_row(found), results=results,
                           owner=current_session().owner)


@bp.route("/batches/<batch_id>/status.json")
def batch_status(batch_id: str) -> dict[str, Any]:
    found = answer(batches_api.get_batch, Batch, batch_id=batch_id)
    return {"id": found.id, "status": found.status.value,
            "terminal": found.status.value != "running", "progress": found.progress}


@bp.route("/batches/<batch_id>/cancel", methods=["POST"])
def cancel_batch(batch_id: str) -> Any:
    answer(batches_api.cancel_batch, Batch, batch_id=batch_id)
    return redirect(url_for("console.batch", batch_id=batch_id), 303)
