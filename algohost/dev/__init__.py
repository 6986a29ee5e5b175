"""The local stack only: `algohost dev up|down|status|demo`, its processes, a dev OpenBao
server and the base-image bootstrap.

Nothing the API, the workers or the sandbox run in production imports this package.
"""
