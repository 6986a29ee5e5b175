"""The long fuzz run: schemathesis against the suite's own API with a valid key, every
operation in /v1/openapi.json, no 5xx and no reply outside the document.

`make test` runs a bounded run of the same checks; this one runs `examples` per operation.
THE HOOK: `fuzz_command` is the one place that says how the long run is made; when the
bounded test in the normal suite takes a knob for its number of examples, point this at it
so both runs share one configuration."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from faults.report import Row

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
BUDGET_S = 420.0


def fuzz_command(stack: Any, examples: int) -> list[str]:
    schemathesis = str(Path(sys.executable).parent / "schemathesis")
    return [schemathesis, "run", stack.url("/v1/openapi.json"), "--url", stack.api_url,
            "-H", f"Authorization: Bearer {stack.key}", "-n", str(examples), "-c", CHECKS,
            "--phases", "examples,coverage,fuzzing,stateful", "--no-color",
            "--max-time", str(int(BUDGET_S)), "--continue-on-failure",
            # As the bounded run: a document whose rules filter out many generated cases
            # is not a failure of the API.
            "--suppress-health-check", "all",
            "--report", "junit", "--report-junit-path", str(stack.state / "schemathesis.xml")]


def fuzz_row(stack: Any, examples: int) -> Row:
    row = Row("schemathesis, long run", f"up to {examples} examples per operation, "
              f"{BUDGET_S:g} s at most")
    started = time.monotonic()
    log = stack.state / "schemathesis.log"
    try:
        with log.open("w") as out:
            # In the state directory: schemathesis keeps a cache of crashes where it runs.
            done = subprocess.run(fuzz_command(stack, examples), stdout=out, cwd=stack.state,
                                  stderr=subprocess.STDOUT, timeout=BUDGET_S + 120, check=False)
        code: int | None = done.returncode
    except subprocess.TimeoutExpired:
        code = None
    failing = failing_operations(stack.state / "schemathesis.xml")
    row.lost = len(failing)
    took = time.monotonic() - started
    row.outcome = (f"exit {code} after {took:.0f} s" if code is not None else
                   f"killed past {BUDGET_S + 120:g} s") + f"; {len(failing)} failing operations"
    row.note = ("`lost` here counts operations that answered 5xx or outside the document"
                + (": " + "; ".join(failing[:10]) if failing else "") + f" (log: {log})")
    return row


def failing_operations(junit: Path) -> list[str]:
    """Operations with a failure or error in schemathesis' JUnit report."""
    try:
        root = ElementTree.parse(junit).getroot()
    except (OSError, ElementTree.ParseError):
        return ["(no report: the run did not finish)"]
    return sorted({str(case.get("name")) for case in root.iter("testcase")
                   if case.find("failure") is not None or case.find("error") is not None})
