def _can_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False


def apply(input):
    return {"opt": _can_write("/opt/algorithm/x"), "tmp": _can_write("/tmp/x")}
