"""`algohost prune`: remove the containers and images algohost left behind.

It only touches objects carrying algohost's labels, and never the base image,
which takes minutes to make again.
"""

from __future__ import annotations

from typing import Any

import click

from algohost.cli.common import CliContext, emit_json, json_option, out, pass_ctx

MANAGED_LABEL = "algohost.managed=1"
BUILD_STEP_LABEL = "algohost.build-step"  # a build's step containers (sandbox/builder.py)
BUILD_LABEL = "algohost.build"
STOPPED = frozenset({"created", "exited", "dead"})


def docker_client(url: str) -> Any:
    import docker  # heavy import, only for the commands that talk to the engine

    try:
        client = docker.DockerClient(base_url=url, timeout=30)
        client.ping()
    except Exception as exc:  # docker-py raises DockerException or requests errors
        raise click.ClickException(f"cannot reach the Docker engine at {url}: {exc}") from exc
    return client


def prune_containers(client: Any, include_running: bool) -> tuple[int, int]:
    """Remove algohost containers; running ones only if asked. Returns (removed, kept)."""
    removed = kept = 0
    managed = [container for label in (MANAGED_LABEL, BUILD_STEP_LABEL)
               for container in client.containers.list(all=True, filters={"label": label},
                                                       sparse=True)]
    for container in managed:
        if container.status not in STOPPED and not include_running:
            kept += 1
            continue
        container.remove(force=True)
        removed += 1
    return removed, kept


def base_image_ids(client: Any, base_image: str) -> set[str]:
    import docker

    try:
        return {client.images.get(base_image).id}
    except docker.errors.ImageNotFound:
        return set()


def prune_images(client: Any, base_image: str) -> tuple[int, int]:
    """Remove algohost-built images no container uses. Returns (removed, in use)."""
    protected = base_image_ids(client, base_image)
    # ImageID from the listing itself: `container.image` costs a request per container.
    used = {c.attrs.get("ImageID") or c.attrs.get("Image")
            for c in client.containers.list(all=True, sparse=True)}
    removed = in_use = 0
    for image in client.images.list(filters={"label": BUILD_LABEL}):
        if image.id in protected or base_image in image.tags:
            continue
        if image.id in used:
            in_use += 1
            continue
        client.images.remove(image.id, force=True)
        removed += 1
    return removed, in_use


@click.command()
@click.option("--images", is_flag=True, help="Also remove built algorithm images.")
@click.option("--all", "include_running", is_flag=True,
              help="Also remove running algohost containers (stop the workers first).")
@json_option
@pass_ctx
def prune(ctx: CliContext, images: bool, include_running: bool, as_json: bool) -> None:
    """Remove stopped algohost containers and, with --images, built images (never the base)."""
    client = docker_client(ctx.settings.sandbox.docker_url)
    try:
        removed, kept = prune_containers(client, include_running)
        report: dict[str, int] = {"containers_removed": removed, "containers_running": kept}
        if images:
            gone, in_use = prune_images(client, ctx.settings.sandbox.base_image)
            report |= {"images_removed": gone, "images_in_use": in_use}
    finally:
        client.close()
    if as_json:
        emit_json(report)
        return
    out.print(f"containers removed: {removed}, left running: {kept}")
    if images:
        out.print(f"images removed: {report['images_removed']}, "
                  f"in use: {report['images_in_use']}")
