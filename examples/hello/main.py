"""A greeting: the smallest useful algorithm."""


def apply(input):
    name = "world"
    if isinstance(input, dict):
        name = str(input.get("name", name))
    elif isinstance(input, str) and input:
        name = input
    return {"greeting": f"Hello, {name}!"}
