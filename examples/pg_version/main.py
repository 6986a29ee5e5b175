"""Report the libpq version psycopg2 was compiled against (proves a C build works)."""

import psycopg2


def apply(input):
    version = psycopg2.__libpq_version__
    return {
        "libpq_version": version,
        "libpq": f"{version // 10000}.{version % 10000}",
        "psycopg2": psycopg2.__version__.split(" ")[0],
    }
