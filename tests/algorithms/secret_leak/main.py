import os
import sys


def apply(input):
    with open("/run/secrets/LEAKY") as f:
        value = f.read()
    print(f"the secret is {value}")
    print(f"on stderr too: {value}", file=sys.stderr)
    if input == "raise":
        raise ValueError(f"refusing to go on with {value}")
    return {"value": value, "env": os.environ.get("LEAKY"), "nested": [{value: value}]}
