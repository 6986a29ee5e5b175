# The algohost application image: the API (gunicorn) and the Celery workers.
# Algorithm code never runs here; workers start sandbox containers on the host's engine.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY algohost ./algohost
# /vault-tokens is the mount point of compose's vault-tokens volume: a new volume takes
# this owner and mode, so vault-init (as algohost) can write the tokens there.
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/algohost --create-home algohost \
    && install -d -o algohost -g algohost -m 0700 /vault-tokens

# The API, vault-init and the webhooks worker need no privilege; the calls and builds
# workers' compose services override this user, because the Docker socket they drive
# is root-equivalent anyway.
USER algohost
WORKDIR /var/lib/algohost
ENV ALGOHOST_STATE_DIR=/var/lib/algohost
EXPOSE 8000
CMD ["gunicorn", "-w", "2", "--threads", "16", "-b", "0.0.0.0:8000", "algohost.api:create_app()"]
