"""Human renderings of API records: jobs, builds, metrics, log tails.

Pure presentation over rich; it never calls the API and never decides exit codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from algohost.public import AlgorithmSummary, Build, Job, JobError, JobMetrics

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


def error_line(error: JobError | None) -> str:
    if not error:
        return ""
    return f"{error.type}: {error.message}" if error.message else error.type


def versions_table(builds: Sequence[Build]) -> Table:
    table = Table("version", "status", Column("build id", no_wrap=True),
                  Column("created", no_wrap=True))
    for build in builds:
        table.add_row(
            build.version,
            Text.assemble(status_text(build.status), " (yanked)" if build.yanked else ""),
            build.id,
            short_time(build.created_at),
        )
    return table


def catalogue_table(found: Sequence[AlgorithmSummary]) -> Table:
    table = Table(Column("algorithm", no_wrap=True), "latest", Column("description"),
                  "parameters", "royalty")
    for summary in found:
        table.add_row(f"{summary.owner}/{summary.name}", summary.latest or "-",
                      truncate(summary.description), ", ".join(summary.parameters) or "-",
                      str(summary.royalty_micros) if summary.royalty_micros else "-")
    return table


def parameter_lines(build: Build) -> list[str]:
    """A notebook version's parameters, one plain line each: what a call's input may set."""
    if build.parameters is None:
        return []
    properties: dict[str, Any] = build.parameters.get("properties") or {}
    if not properties:
        return ["parameters: none (the notebook has no cell tagged 'parameters')"]
    lines = ["parameters (the call's input: a JSON object of any of these):"]
    width = max(len(name) for name in properties)
    for name, prop in properties.items():
        kind = prop.get("type", "any")
        kind = "number" if kind == ["integer", "number"] else str(kind)
        default = json.dumps(prop["default"]) if "default" in prop else "-"
        note = f"  {prop['description']}" if prop.get("description") else ""
        lines.append(f"  {name.ljust(width)}  {kind:<8} default {default}{note}")
    return lines


def jobs_table(jobs: Sequence[Job]) -> Table:
    table = Table(Column("id", no_wrap=True), Column("algorithm", overflow="fold"), "status",
                  Column("created", no_wrap=True), "total ms")
    for job in jobs:
        table.add_row(
            job.id,
            job.algorithm or job.requested,
            status_text(job.status),
            short_time(job.created_at),
            ms(job.metrics.total_ms if job.metrics else None),
        )
    return table


def metrics_table(metrics: JobMetrics, warm: bool | None = None,
                  reported: Mapping[str, float] | None = None) -> Table:
    table = Table("metric", "value", title="metrics")
    table.add_row("queue_ms", ms(metrics.queue_ms))
    table.add_row("cold_start_ms", ms(metrics.cold_start_ms))
    table.add_row("run_ms", ms(metrics.run_ms))
    table.add_row("total_ms", ms(metrics.total_ms))
    table.add_row("peak memory MiB", mib(metrics.peak_memory_bytes))
    if warm is not None:
        table.add_row("warm", "yes" if warm else "no")
    for name, value in sorted((reported or {}).items()):
        table.add_row(f"{name} (reported)", f"{value:g}")
    return table


def print_job(console: Console, job: Job) -> None:
    """The whole record: fields, metrics, output, error and logs."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    fields.add_row("id", job.id)
    fields.add_row("algorithm", job.algorithm or job.requested)
    fields.add_row("status", status_text(job.status))
    if job.reason:
        fields.add_row("reason", job.reason)
    fields.add_row("created", short_time(job.created_at))
    fields.add_row("started", short_time(job.started_at))
    fields.add_row("finished", short_time(job.finished_at))
    console.print(fields)
    if job.metrics:
        console.print(metrics_table(job.metrics, job.warm))
    if job.status == "succeeded":
        console.print_json(json.dumps(job.output))
    print_failure(console, job)


def print_failure(console: Console, job: Job) -> None:
    """Error type, message, traceback and the algorithm's logs, when there are any."""
    error = job.error
    if error:
        console.print(Text(error_line(error), style="bold red"))
        if error.cell is not None:
            console.print(Text(f"in cell {error.cell.index}:", style="red"))
            console.print(Text(error.cell.source.rstrip(), style="dim"), soft_wrap=True)
        if error.traceback:
            console.print(Text(error.traceback.rstrip(), style="red"), soft_wrap=True)
    if job.logs and job.status != "succeeded":
        console.rule("logs")
        console.print(Text(tail(job.logs, 200)), soft_wrap=True)
