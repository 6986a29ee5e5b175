"""Human renderings of API records: jobs, builds, metrics, log tails.

Pure presentation over rich; it never calls the API and never decides exit codes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from algohost.cli.client import Build, ErrorInfo, Job, Metrics

MiB = 1024 * 1024
STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "canceled": "yellow",
    "running": "cyan",
    "building": "cyan",
    "queued": "blue",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def short_time(stamp: str | None) -> str:
    """'2026-11-26T12:00:00.123Z' -> '2026-11-26 12:00:00'."""
    return stamp.replace("T", " ")[:19] if stamp else "-"


def ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def mib(value: int | None) -> str:
    return "-" if not value else f"{value / MiB:.1f}"


def truncate(text: str, width: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def error_line(error: ErrorInfo | None) -> str:
    if not error:
        return ""
    kind, message = error.get("type", "Error"), error.get("message", "")
    return f"{kind}: {message}" if message else kind


def versions_table(builds: Sequence[Build]) -> Table:
    table = Table("version", "status", Column("build id", no_wrap=True),
                  Column("created", no_wrap=True))
    for build in builds:
        table.add_row(
            build.get("version", "-"),
            status_text(build.get("status", "?")),
            build.get("id", "-"),
            short_time(build.get("created_at")),
        )
    return table


def jobs_table(jobs: Sequence[Job]) -> Table:
    table = Table(Column("id", no_wrap=True), Column("algorithm", overflow="fold"), "status",
                  Column("created", no_wrap=True), "total ms")
    for job in jobs:
        table.add_row(
            job.get("id", "-"),
            job.get("algorithm") or job.get("requested", "-"),
            status_text(job.get("status", "?")),
            short_time(job.get("created_at")),
            ms(job.get("metrics", {}).get("total_ms")),
        )
    return table


def metrics_table(metrics: Metrics, warm: bool | None = None) -> Table:
    table = Table("metric", "value", title="metrics")
    table.add_row("queue_ms", ms(metrics.get("queue_ms")))
    table.add_row("cold_start_ms", ms(metrics.get("cold_start_ms")))
    table.add_row("run_ms", ms(metrics.get("run_ms")))
    table.add_row("total_ms", ms(metrics.get("total_ms")))
    table.add_row("peak memory MiB", mib(metrics.get("peak_memory_bytes")))
    if warm is not None:
        table.add_row("warm", "yes" if warm else "no")
    return table


def print_job(console: Console, job: Job) -> None:
    """The whole record: fields, metrics, output, error and logs."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    fields.add_row("id", job.get("id", "-"))
    fields.add_row("algorithm", job.get("algorithm") or job.get("requested", "-"))
    fields.add_row("status", status_text(job.get("status", "?")))
    if job.get("reason"):
        fields.add_row("reason", str(job.get("reason")))
    fields.add_row("created", short_time(job.get("created_at")))
    fields.add_row("started", short_time(job.get("started_at")))
    fields.add_row("finished", short_time(job.get("finished_at")))
    console.print(fields)
    if job.get("metrics"):
        console.print(metrics_table(job.get("metrics", {}), job.get("warm")))
    if job.get("status") == "succeeded":
        console.print_json(json.dumps(job.get("output")))
    print_failure(console, job)


def print_failure(console: Console, job: Job) -> None:
    """Error type, message, traceback and the algorithm's logs, when there are any."""
    error = job.get("error")
    if error:
        console.print(Text(error_line(error), style="bold red"))
        if error.get("traceback"):
            console.print(Text(error["traceback"].rstrip(), style="red"), soft_wrap=True)
    logs = job.get("logs")
    if logs and job.get("status") != "succeeded":
        console.rule("logs")
        console.print(Text(tail(logs, 200)), soft_wrap=True)
