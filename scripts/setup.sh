#!/usr/bin/env bash
# Installs what algohost needs on a Debian host, then the project's .venv.
# Idempotent and quick when everything is present: it installs only what is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
# Daemons and debootstrap live in sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# A `docker` client may be present without the engine: look for dockerd itself.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# The egress fence (`algohost egress install`): IPv4 and IPv6 rules, read back by the workers.
{ command -v ip6tables && command -v ip6tables-save; } >/dev/null 2>&1 || missing+=(iptables)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The console's browser tests drive Debian's Chromium through Playwright (tests/browser/).
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi

# Reinstall only when the dependencies may have changed.
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "setup: installing algohost and its dev dependencies into .venv"
    # Playwright's own browser download is never used: the tests run /usr/bin/chromium.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/python -m pip install -q -e '.[dev]'
    touch .venv/.installed
fi
