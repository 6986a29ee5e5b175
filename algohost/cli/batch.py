"""`algohost batch ALGO --inputs FILE.jsonl --out FILE.jsonl`: submit, follow, write in order.

Resumable: the batch id is saved next to the output (OUT.batch); a run with that id fetches
what is done instead of submitting again, keeping the complete lines already written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from algohost.cli.client import ApiClient, Batch
from algohost.cli.common import (
    CliContext,
    algorithm_ref_callback,
    emit_json,
    err,
    json_option,
    pass_ctx,
)
from algohost.public import BatchResult

PAGE = 1000
POLL_S = 0.5


class BatchIncomplete(click.ClickException):
    exit_code = 1


def marker_path(out: Path) -> Path:
    return out.with_name(out.name + ".batch")


def read_marker(out: Path) -> str | None:
    try:
        return marker_path(out).read_text().strip() or None
    except FileNotFoundError:
        return None


def complete_lines(out: Path) -> int:
    """Keep the whole lines of a previous run's output (drop a torn last one); count them."""
    if not out.exists():
        return 0
    data = out.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with out.open("r+b") as handle:
            handle.truncate(keep)
    return data.count(b"\n", 0, keep)


def follow(client: ApiClient, batch_id: str, total: int, start: int,
           write: Callable[[BatchResult], None], on_done: Callable[[int], None],
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Write results from `start` on, in input order, as they finish."""
    index = start
    while index < total:
        page = client.batch_results(batch_id, index, PAGE)
        waiting = False
        for result in page.results:
            if result.status == "pending":
                waiting = True
                break
            write(result)
            index += 1
        if waiting or not page.results:
            on_done(total - client.batch(batch_id).counts.pending)
            sleep(POLL_S)
        else:
            on_done(index)


def _start(client: ApiClient, algorithm: str, inputs: Path | None, out: Path,
           batch_id: str | None, webhook: str | None, timeout_s: int | None
           ) -> tuple[Batch, bool]:
    """The batch to follow and whether it was submitted just now."""
    if batch_id:
        return client.batch(batch_id), False
    if inputs is None:
        raise click.UsageError("--inputs is required to submit a new batch")
    batch = client.submit_batch(algorithm, inputs.read_bytes(), webhook=webhook,
                                timeout_s=timeout_s)
    return batch, True


@click.command()
@click.argument("algorithm", callback=algorithm_ref_callback)
@click.option("--inputs", "inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON Lines: one input per line.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where results go, one JSON line per input, in input order.")
@click.option("--batch-id", default=None, help="Resume this batch instead of submitting.")
@click.option("--new", "force_new", is_flag=True,
              help="Submit again even if OUT.batch names an earlier batch.")
@click.option("--webhook", default=None, help="URL that receives the batch's completed event.")
@click.option("--timeout", "timeout_s", type=click.IntRange(min=1), default=None,
              help="Seconds each input's call may run (default: the algorithm's own).")
@json_option
@pass_ctx
def batch(ctx: CliContext, algorithm: str, inputs: Path | None, out: Path,
          batch_id: str | None, force_new: bool, webhook: str | None, timeout_s: int | None,
          as_json: bool) -> None:
    """Run ALGORITHM on every line of --inputs; write the results to --out in order."""
    client = ctx.client()
    previous = None if force_new else read_marker(out)
    record, submitted = _start(client, algorithm, inputs, out, batch_id or previous, webhook,
                               timeout_s)
    resumed_same = not submitted and record.id == previous
    marker_path(out).write_text(record.id + "\n")
    err.print(f"batch {record.id}: {record.total} inputs "
              f"({'submitted' if submitted else 'resumed'}; "
              f"resume with --batch-id {record.id})")
    written = complete_lines(out) if resumed_same else 0
    total = record.total
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=err, disable=not err.is_terminal)
    try:
        with progress, out.open("a" if resumed_same else "w", encoding="utf-8") as sink:
            task = progress.add_task(record.id, total=total, completed=written)
            follow(client, record.id, total, written, lambda r: _write(sink, r),
                   lambda done: progress.update(task, completed=done))
    except KeyboardInterrupt:
        err.print(f"stopped following; the batch goes on: `algohost batch {algorithm} "
                  f"--out {out} --batch-id {record.id}`")
        raise SystemExit(130) from None
    final = client.batch(record.id)
    _report(final, out, as_json)


def _write(sink: IO[str], result: BatchResult) -> None:
    """One result line, with exactly the fields the API sent."""
    line = result.model_dump(mode="json", exclude_unset=True)
    sink.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")


def _report(final: Batch, out: Path, as_json: bool) -> None:
    if as_json:
        emit_json(final)
    else:
        summary = ", ".join(f"{n} {status}" for status, n in final.counts if n)
        err.print(f"batch {final.id} {final.status}: {summary}; results in {out}")
    unsuccessful = final.total - final.counts.succeeded
    if unsuccessful:
        raise BatchIncomplete(f"{unsuccessful} of {final.total} inputs did not succeed")
