import hashlib
import os
import stat

PATH = "/run/secrets/API_TOKEN"


def apply(input):
    with open(PATH, "rb") as f:
        data = f.read()
    return {"sha256": hashlib.sha256(data).hexdigest(),
            "mode": oct(stat.S_IMODE(os.stat(PATH).st_mode)),
            "env_present": "API_TOKEN" in os.environ}
