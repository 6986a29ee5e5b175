"""A sweep's target: a score that peaks at x = 3, y = -1; `mode: "boom"` fails the call,
`mode: "silent"` answers without a score; `plot` leaves a file under /outputs; `sleep_s` makes it slow."""


import time


def apply(input):
    time.sleep(float(input.get("sleep_s", 0)))
    mode = input.get("mode", "ok")
    if mode == "boom":
        raise ValueError("boom was asked for")
    x, y = float(input.get("x", 0)), float(input.get("y", 0))
    score = 10 - (x - 3) ** 2 - (y + 1) ** 2
    if input.get("plot"):
        with open("/outputs/plot.txt", "w") as f:
            f.write(f"x={x} y={y} score={score}\n")
    if mode == "silent":
        return {"note": "no score"}
    return {"score": score, "metrics": {"loss": -score}}
