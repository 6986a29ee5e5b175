"""`algohost compare` and `algohost usage`: build metrics side by side, and metered usage.

Thin shells over `ApiClient`; what differs between builds is highlighted (red worse,
green better, against the first version named), so a regression reads at a glance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

import click
from rich.table import Table
from rich.text import Text

from algohost.cli.common import (
    CliContext,
    emit_json,
    json_option,
    out,
    parse_algorithm_ref,
    pass_ctx,
)
from algohost.names import VERSION
from algohost.reports import AlgorithmMetrics, BuildMetricsView, UsageLine


@dataclass(frozen=True)
class Row:
    label: str
    get: Callable[[BuildMetricsView], float | None]
    fmt: str
    lower_better: bool | None  # None: no direction (highlighted in yellow when it moves)
    is_rate: bool = False


def _path(path: str, scale: float = 1.0) -> Callable[[BuildMetricsView], float | None]:
    read = attrgetter(path)
    return lambda build: float(read(build)) / scale


def _reported(name: str) -> Callable[[BuildMetricsView], float | None]:
    return lambda build: build.custom[name].mean if name in build.custom else None


ROWS = [
    Row("calls", _path("calls"), "{:,.0f}", None),
    Row("error rate", _path("error_rate"), "{:.2%}", True, True),
    Row("timeout rate", _path("timeout_rate"), "{:.2%}", True, True),
    Row("cold-start share", _path("cold_start_share"), "{:.2%}", True, True),
    *[Row(f"{what} {p}", _path(f"{what}.{p}"), "{:,.1f}", True)
      for what in ("run_ms", "total_ms") for p in ("p50", "p95", "p99")],
    Row("peak memory p95 (MiB)", _path("peak_memory_bytes.p95", 2**20), "{:,.1f}", True),
    Row("peak memory max (MiB)", _path("peak_memory_bytes.max", 2**20), "{:,.1f}", True),
]


def _custom_rows(report: AlgorithmMetrics) -> list[Row]:
    names = sorted({name for build in report.builds for name in build.custom})
    return [Row(f"{name} (mean)", _reported(name), "{:,.4g}", None) for name in names]


def differs(base: float, value: float, is_rate: bool, threshold: float) -> bool:
    if is_rate:
        return abs(value - base) >= 0.01  # a percentage point
    if base == 0:
        return value != 0
    return abs(value - base) / abs(base) >= threshold


def cell(base: float | None, value: float | None, row: Row, threshold: float) -> Text:
    if value is None:
        return Text("—", style="dim")
    text = Text(row.fmt.format(value))
    if base is None or not differs(base, value, row.is_rate, threshold):
        return text
    if not row.is_rate and base:
        text.append(f" ({(value - base) / abs(base):+.0%})")
    style = "bold yellow" if row.lower_better is None else (
        "bold green" if (value < base) == row.lower_better else "bold red")
    text.style = style
    return text


def comparison_table(report: AlgorithmMetrics, threshold: float) -> Table:
    title = report.algorithm + (f" since {report.since}" if report.since else "")
    table = Table("metric", *[b.version for b in report.builds], title=title)
    for row in [*ROWS, *_custom_rows(report)]:
        values = [row.get(b) for b in report.builds]
        base = values[0] if values else None
        table.add_row(row.label, *[cell(base if n else None, value, row, threshold)
                                   for n, value in enumerate(values)])
    return table


@click.command()
@click.argument("algorithm")
@click.argument("versions", nargs=-1)
@click.option("--since", help="Only jobs finished since then: an ISO-8601 time, or 30m, 24h, 7d.")
@click.option("--threshold", type=click.FloatRange(min=0.0), default=0.1, show_default=True,
              help="Relative difference from the first version that is highlighted.")
@json_option
@pass_ctx
def compare(ctx: CliContext, algorithm: str, versions: tuple[str, ...], since: str | None,
            threshold: float, as_json: bool) -> None:
    """Compare builds of ALGORITHM (owner/name) side by side: VERSIONS, or the newest ten."""
    ref = parse_algorithm_ref(algorithm, allow_version=False)
    for version in versions:
        if not VERSION.matches(version):
            raise click.BadParameter(f"{version!r}: {VERSION.rule}", param_hint="VERSIONS")
    report = ctx.client().metrics(ref.owner, ref.name, list(versions), since)
    if as_json:
        emit_json(report)
        return
    if not report.builds:
        out.print(f"{report.algorithm} has no successful build yet")
        return
    out.print(comparison_table(report, threshold))


def usage_table(lines: list[UsageLine], total: UsageLine, group_by: list[str],
                title: str) -> Table:
    table = Table(*group_by, "calls", "compute s", "memory MiB·s", "royalties", title=title)
    for line in [*lines, total]:
        groups = [getattr(line, name) or "" for name in group_by]
        if line is total and group_by:
            groups[0] = "total"
        table.add_row(*groups, f"{line.calls:,}", f"{line.compute_s:,.3f}",
                      f"{line.memory_mib_s:,.1f}", f"{line.royalty_micros / 1e6:,.6f}",
                      style="bold" if line is total else None)
    return table


@click.command()
@click.option("--group-by", default="day,algorithm", show_default=True,
              help="Comma-separated: day, algorithm, version (empty: one total).")
@click.option("--since", help="First day (UTC), YYYY-MM-DD; default 29 days before --until.")
@click.option("--until", help="Last day (UTC), YYYY-MM-DD; default today.")
@click.option("--payee", is_flag=True,
              help="What calls of YOUR algorithms used (and owe you), not what your calls used.")
@json_option
@pass_ctx
def usage(ctx: CliContext, group_by: str, since: str | None, until: str | None, payee: bool,
          as_json: bool) -> None:
    """Show metered usage: calls, compute-seconds, memory-seconds and royalties."""
    report = ctx.client().usage(group_by, since, until, "payee" if payee else "payer")
    if as_json:
        emit_json(report)
        return
    title = f"usage of {report.owner} as {report.role}, {report.since} .. {report.until}"
    out.print(usage_table(report.lines, report.total, report.group_by, title))
    budget = report.budget
    if budget.compute_s_per_day > 0 and report.role == "payer":
        out.print(f"budget: {budget.spent_today_s:,.3f} of {budget.compute_s_per_day:g} "
                  "compute-seconds spent today (UTC)")


METERING_COMMANDS = (compare, usage)
