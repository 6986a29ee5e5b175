"""The fault-injection suite run by `make faults`: it starts its own stack, breaks one part
at a time under load, and prints what was lost, duplicated, and how long recovery took.

Slow and disruptive by design, so never part of `make test`; it never touches the shared
Redis, dockerd or OpenBao: every process it signals is one it started.
"""
