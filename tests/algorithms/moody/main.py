"""Does what its input says, and tells which container did it and how often."""

import os
import socket
import time

CALLS = 0


def load():
    global LOADED_AT
    LOADED_AT = time.time()


def apply(input):
    global CALLS
    CALLS += 1
    action = (input or {}).get("action", "ok")
    if action == "crash":
        os._exit(3)
    if action == "sleep":
        time.sleep(float(input.get("seconds", 1)))
    return {"container": socket.gethostname(), "calls": CALLS, "loaded_at": LOADED_AT}
