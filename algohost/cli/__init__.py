"""The `algohost` command line: publish, call and inspect algorithms, run the local stack.

It talks to the HTTP API (and, for `keys` and `dev`, to Redis and Docker directly);
it never reads the environment except through `algohost.config.load_settings`.
"""
