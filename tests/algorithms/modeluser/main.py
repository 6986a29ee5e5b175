import os


def _try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "written"
    except OSError as exc:
        return type(exc).__name__


def apply(input):
    with open("/models/weights") as f:
        weights = f.read()
    with open("/models/bundle/params/a.txt") as f:
        bundle = f.read()
    return {"weights": weights, "bundle": bundle,
            "listing": sorted(os.listdir("/models/bundle")),
            "write_file": _try_write("/models/weights"),
            "write_dir": _try_write("/models/bundle/new.txt")}
