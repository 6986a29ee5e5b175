"""Always raises: shows how an algorithm's exception reaches the caller."""


def check(input):
    if not isinstance(input, dict) or "required" not in input:
        raise ValueError("input must be an object with a 'required' key")
    return input["required"]


def apply(input):
    print("about to validate", input)
    return check(input)
