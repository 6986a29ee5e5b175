"""Calls algorithms through algohost_runtime.call(), as its input says.

{"ref": R, "n": N}          calls R with n-1 until 0; returns {"depth": N}
{"ref": R, "fan": K}        calls R with {"n": 0} K times
{"target": T, "payload": P} calls T once with P
{"sleep": S}                sleeps S seconds
"catch": true               returns a CallError's fields instead of raising it
"""

import time

import algohost_runtime as ah


def apply(input):
    if "sleep" in input:
        time.sleep(input["sleep"])
        return {"slept": input["sleep"]}
    try:
        if "fan" in input:
            return [ah.call(input["ref"], {"n": 0}) for _ in range(input["fan"])]
        if "target" in input:
            return ah.call(input["target"], input.get("payload"),
                           timeout_s=input.get("timeout_s"))
        if input["n"] <= 0:
            return {"depth": 0}
        inner = ah.call(input["ref"], {**input, "n": input["n"] - 1})
        return {"depth": inner["depth"] + 1} if "depth" in inner else inner
    except ah.CallError as exc:
        if input.get("catch"):
            return {"code": exc.code, "status": exc.status, "job": exc.job,
                    "message": str(exc)}
        raise
