"""Batch metering's cost on the store: a batch's results written flush by flush, metered
(usage ledger and build metrics in the same script) against the same writes unmetered.

Redis only, no worker: what the metering adds to the hot path of a batch, each input's
write included, with a ratio against the unmetered writes measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from algohost.clock import now_iso
from algohost.config import Settings
from algohost.store import connect
from algohost.store.batch_metering import BatchMetering
from algohost.store.batches import BatchRecord, BatchStatus, BatchStore, ItemResult


def write(store: BatchStore, metering: BatchMetering | None, batch_id: str, items: int,
          flush: int) -> float:
    record = BatchRecord(id=batch_id, owner="bob", status=BatchStatus.RUNNING,
                         algorithm="alice/hello@0.1.0", build_id="bld_bench", total=items,
                         royalty_micros=5)
    store.create(record, [json.dumps({"name": str(i)}) for i in range(items)])
    results: dict[int, ItemResult] = {
        i: {"status": "succeeded", "reason": "succeeded", "output": {"greeting": f"hello {i}"},
            "metrics": {"run_ms": 0.5 + i % 13 / 10, "peak_memory_bytes": 31_000_000}}
        for i in range(items)}
    started = time.perf_counter()
    for start in range(0, items, flush):
        at = now_iso()
        store.record_results(batch_id, {i: results[i] for i in range(start, min(start + flush,
                                                                                 items))},
                             at, None if metering is None else metering.meter(record, at))
    return time.perf_counter() - started


def run(redis_url: str, items: int, flush: int, rounds: int) -> dict[str, Any]:
    client = connect(Settings(redis_url=redis_url))
    store, metering = BatchStore(client, 3600), BatchMetering.from_settings(Settings())
    plain, metered = [], []
    for n in range(rounds):  # interleaved, so a busy moment falls on both
        plain.append(write(store, None, f"b_plain_{n}", items, flush))
        metered.append(write(store, metering, f"b_metered_{n}", items, flush))
    p, m = statistics.median(plain), statistics.median(metered)
    return {"items": items, "flush": flush, "rounds": rounds,
            "unmetered_ms": round(p * 1000, 1), "metered_ms": round(m * 1000, 1),
            "added_us_per_item": round((m - p) / items * 1e6, 2),
            "ratio_metered_to_unmetered": round(m / p, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--flush", action="store_true", help="empty the database first")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--per-flush", type=int, default=200,
                        help="inputs a flush writes (a fast chunk flushes once: 200)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    client = connect(Settings(redis_url=args.redis_url))
    if client.dbsize() and not args.flush:
        raise SystemExit(f"{args.redis_url} holds keys; give an empty database or --flush")
    client.flushdb()
    try:
        print(json.dumps(run(args.redis_url, args.items, args.per_flush, args.rounds), indent=1))
    finally:
        client.flushdb()


if __name__ == "__main__":
    main()
