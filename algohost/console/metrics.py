"""Metrics per build as charts (latency percentiles, calls and errors per hour), a compare
view of builds side by side, and usage per day: the API's metering views, drawn as SVG.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import render_template, request

from algohost.api import metering as metering_api
from algohost.api.artifacts import configured
from algohost.api.context import services
from algohost.api.routing import validate
from algohost.console.blueprint import bp
from algohost.console.calls import answer
from algohost.console.drawing import Series, line_chart
from algohost.console.session import current_session
from algohost.reports import AlgorithmMetrics, UsageReport

DEFAULT_SINCE = "7d"


def _hour_label(hour: float) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime("%d %H:00")


def _over_time(build_id: str, version: str, since: float) -> list[Any]:
    """Charts of one build's hours: latency percentiles, and calls with failures."""
    hours = configured(services().metrics).hourly(build_id, since)
    if not hours:
        return []
    ends = {float(h): _hour_label(h) for h in (hours[0][0], hours[-1][0])}
    latency = [Series(name, [(h, getattr(s.total_ms, name)) for h, s in hours])
               for name in ("p50", "p95", "p99")]
    calls = [Series("calls", [(h, s.calls) for h, s in hours]),
             Series("failed", [(h, s.statuses.get("failed", 0) + s.statuses.get("timed_out", 0))
                               for h, s in hours])]
    return [line_chart(latency, title=f"{version}: total_ms percentiles per hour", y_unit="ms",
                       x_labels=ends),
            line_chart(calls, title=f"{version}: calls and failures per hour", x_labels=ends)]


@bp.route("/algorithms/<owner>/<name>/metrics")
def metrics(owner: str, name: str) -> str:
    chosen = request.args.getlist("version")
    query = validate(metering_api.MetricsQuery,
                     {"since": request.args.get("since") or DEFAULT_SINCE,
                      **({"versions": ",".join(chosen)} if chosen else {})}, "query")
    found = answer(metering_api.algorithm_metrics, AlgorithmMetrics, owner=owner, name=name,
                   query=query)
    since = (metering_api.since_epoch(query.since, time.time())
             if query.since is not None else 0.0)
    builds = list(reversed(found.builds))  # oldest first, left to right
    labels = {float(i): b.version for i, b in enumerate(builds)}
    compare = [
        line_chart([Series(p, [(float(i), getattr(b.total_ms, p)) for i, b in enumerate(builds)])
                    for p in ("p50", "p95", "p99")],
                   title="total_ms percentiles by build", y_unit="ms", x_labels=labels),
        line_chart([Series("error rate %", [(float(i), b.error_rate * 100)
                                            for i, b in enumerate(builds)])],
                   title="error rate by build", y_unit="%", x_labels=labels),
    ] if builds else []
    over_time = [chart for b in found.builds[:3] for chart in _over_time(b.build_id, b.version,
                                                                         since)]
    return render_template("metrics.html", algo_owner=owner, name=name, found=found,
                           compare=compare, over_time=over_time, chosen=chosen,
                           since=request.args.get("since") or DEFAULT_SINCE,
                           owner=current_session().owner)


@bp.route("/usage")
def usage() -> str:
    role = request.args.get("role", "payer")
    by_day = answer(metering_api.usage, UsageReport,
                    query=validate(metering_api.UsageQuery, {"group_by": "day", "role": role},
                                   "query"))
    detail = answer(metering_api.usage, UsageReport,
                    query=validate(metering_api.UsageQuery,
                                   {"group_by": "day,algorithm,version", "role": role}, "query"))
    days = {float(i): line.day or "" for i, line in enumerate(by_day.lines)}
    ends = {k: v for k, v in days.items() if k in (0.0, float(len(days) - 1))}
    charts = [
        line_chart([Series("calls", [(float(i), line.calls)
                                     for i, line in enumerate(by_day.lines)])],
                   title="calls per day", x_labels=ends),
        line_chart([Series("compute s", [(float(i), line.compute_s)
                                         for i, line in enumerate(by_day.lines)])],
                   title="compute seconds per day", y_unit="s", x_labels=ends),
    ]
    return render_template("usage.html", report=detail, charts=charts, role=role,
                           owner=current_session().owner)
