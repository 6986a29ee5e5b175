"""Takes DELAY_S per call by design, and reports it: builds of it differ in latency."""

import time

import algohost_runtime as ah

DELAY_S = 0.02


def apply(input):
    time.sleep(DELAY_S)
    ah.log_metric("delay_ms", DELAY_S * 1000)
    if input == "bad-metric":
        try:
            ah.log_metric("Not A Name", 1)
        except ValueError as exc:
            return {"refused": str(exc)}
    return {"slept_ms": DELAY_S * 1000}
