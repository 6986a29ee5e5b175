"""Sweeps: a list with progress, and one sweep as a leaderboard of its trials with a chart
of the objective against the trial number (and the best so far), through the API's views.
"""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, url_for

from algohost.api import sweeps as sweeps_api
from algohost.console.blueprint import bp
from algohost.console.calls import answer
from algohost.console.drawing import Series, line_chart
from algohost.console.session import current_session
from algohost.public import Sweep, SweepList


@bp.route("/sweeps")
def sweeps() -> str:
    listing = answer(sweeps_api.list_sweeps, SweepList,
                     query=sweeps_api.SweepListQuery(limit=100))
    return render_template("sweeps.html", sweeps=listing.sweeps, owner=current_session().owner)


def objective_chart(sweep: Sweep) -> Any:
    scored = sorted((t.number, t.objective) for t in sweep.trials if t.objective is not None)
    best: list[tuple[float, float]] = []
    pick = max if sweep.objective.get("direction") == "maximize" else min
    for number, value in scored:
        best.append((number, value if not best else pick(best[-1][1], value)))
    key = sweep.objective.get("key", "objective")
    ends = {float(n): f"#{n}" for n in {scored[0][0], scored[-1][0]}} if scored else {}
    return line_chart([Series(key, [(float(n), v) for n, v in scored]),
                       Series("best so far", best)],
                      title=f"{key} by trial ({sweep.objective.get('direction', '')})",
                      x_labels=ends)


@bp.route("/sweeps/<sweep_id>")
def sweep(sweep_id: str) -> str:
    found = answer(sweeps_api.get_sweep, Sweep, sweep_id=sweep_id)
    return render_template("sweep.html", sweep=found, chart=objective_chart(found),
                           owner=current_session().owner)


@bp.route("/sweeps/<sweep_id>/status.json")
def sweep_status(sweep_id: str) -> dict[str, Any]:
    found = answer(sweeps_api.get_sweep, Sweep, sweep_id=sweep_id)
    return {"id": found.id, "status": found.status.value,
            "terminal": found.status.value != "running"}


@bp.route("/sweeps/<sweep_id>/cancel", methods=["POST"])
def cancel_sweep(sweep_id: str) -> Any:
    answer(sweeps_api.cancel_sweep, Sweep, sweep_id=sweep_id)
    return redirect(url_for("console.sweep", sweep_id=sweep_id), 303)
