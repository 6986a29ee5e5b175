"""The long fuzz run: schemathesis against the suite's own API with a valid key, every
operation in /v1/openapi.json, no 5xx and no reply outside the document.

`make test` runs a bounded run of the same checks; this one runs `examples` per operation.
THE HOOK: `fuzz_command` is the one place that says how the long run is made; when the
bounded test in the normal suite takes a knob for its number of examples, point this at it
so both runs share one configuration."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from faults.report import Row

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
BUDGET_S = 300.0


def fuzz_command(stack: Any, examples: int) -> list[str]:
    schemathesis = str(Path(sys.executable).parent / "schemathesis")
    return [schemathesis, "run", stack.url("/v1/openapi.json"), "--url", stack.api_url,
            "-H", f"Authorization: Bearer {stack.key}", "-n", str(examples), "-c", CHECKS,
            "--phases", "examples,coverage,fuzzing,stateful", "--no-color",
            "--generation-deterministic"]


def fuzz_row(stack: Any, examples: int) -> Row:
    row = Row("schemathesis, long run", f"up to {examples} examples per operation, "
              f"{BUDGET_S:g} s at most")
    started = time.monotonic()
    log = stack.state / "schemathesis.log"
    try:
        with log.open("w") as out:
            done = subprocess.run(fuzz_command(stack, examples), stdout=out,
                                  stderr=subprocess.STDOUT, timeout=BUDGET_S, check=False)
        code: int | None = done.returncode
    except subprocess.TimeoutExpired:
        code = None
    row.recovery_s = None
    text = log.read_text(errors="replace")
    failures = re.findall(r"^_+ (.+?) _+$", text, flags=re.MULTILINE)
    row.lost = 0
    row.duplicated = "-"
    took = time.monotonic() - started
    if code is None:
        row.outcome = f"stopped at the {BUDGET_S:g} s budget; {len(failures)} failing operations"
    else:
        row.outcome = f"exit {code} after {took:.0f} s; {len(failures)} failing operations"
    if failures:
        row.note = "failing: " + "; ".join(failures[:8]) + f" (full log: {log})"
    summary = [line for line in text.splitlines() if "passed" in line or "failed" in line]
    if summary:
        row.outcome += f" ({summary[-1].strip(' =')})"
    return row
