import os


def apply(input):
    with open("/run/secrets/TOKEN") as f:
        return {"file": f.read(), "env": os.environ.get("TOKEN")}
