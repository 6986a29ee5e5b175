print("about to fail")
raise RuntimeError("this algorithm fails at import")


def apply(input):
    return input
