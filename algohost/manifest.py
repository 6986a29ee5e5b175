"""algorithm.toml: parsing and validation into a typed `Manifest`.

Every problem is an InvalidManifest naming the offending key; unknown keys are
errors too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from typing import Any

from algohost.errors import InvalidManifest
from algohost.names import (
    ALGORITHM_NAME,
    APT_PACKAGE,
    ENTRYPOINT,
    MODEL_KEY,
    MODEL_REF,
    PIP_REQUIREMENT,
    SECRET_NAME,
    Grammar,
)

SUPPORTED_PYTHON = ("3", "3.11")

MAX_TIMEOUT_S = 3600
MAX_MEMORY_MB = 64 * 1024
MIN_MEMORY_MB = 16
VISIBILITIES = ("private", "public")
MAX_ROYALTY_MICROS = 1_000_000_000  # a thousand currency units per call
MAX_DESCRIPTION = 1000
MAX_PARAMETERS = 100
# Catalogue keys left out of to_dict when unset, so older manifests hash as they always did.
_CATALOGUE_DEFAULTS: dict[str, Any] = {"description": "", "visibility": None,
                                       "royalty_micros": 0, "parameters": {}}


@dataclass(frozen=True)
class BuildSection:
    python_packages: list[str] = field(default_factory=list)
    requirements: str | None = None
    system_packages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResourcesSection:
    timeout_s: int = 30
    memory_mb: int = 512
    cpus: float = 1.0
    network: bool = False


@dataclass(frozen=True)
class SecretsSection:
    names: list[str] = field(default_factory=list)
    as_env: bool = False


@dataclass(frozen=True)
class Manifest:
    name: str
    entrypoint: str
    python: str = "3.11"
    build: BuildSection = field(default_factory=BuildSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    secrets: SecretsSection = field(default_factory=SecretsSection)
    models: dict[str, str] = field(default_factory=dict)
    # The catalogue: what a search shows, who may call, what each call by another pays.
    description: str = ""
    visibility: str | None = None  # None: leave the algorithm's visibility as it is
    royalty_micros: int = 0
    parameters: dict[str, str] = field(default_factory=dict)  # input field -> its meaning

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.models:  # so manifests without models hash as they always did
            del data["models"]
        for key, default in _CATALOGUE_DEFAULTS.items():
            if data[key] == default:
                del data[key]
        return data


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            raise InvalidManifest(f"unknown key '{path}'", key=path)


def _typed(table: dict[str, Any], key: str, kinds: tuple[type, ...], where: str) -> Any:
    value = table[key]
    path = f"{where}.{key}" if where else key
    # bool is an int subclass; a `true` where a number belongs is a mistake.
    if isinstance(value, bool) and bool not in kinds:
        raise InvalidManifest(f"'{path}' must be {_kind_names(kinds)}", key=path)
    if not isinstance(value, kinds):
        raise InvalidManifest(f"'{path}' must be {_kind_names(kinds)}", key=path)
    return value


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _string_list(table: dict[str, Any], key: str, where: str, grammar: Grammar) -> list[str]:
    values = _typed(table, key, (list,), where)
    path = f"{where}.{key}"
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise InvalidManifest(f"'{path}' must be a list of non-empty strings", key=path)
        grammar.check(item, InvalidManifest, path, key=path)
    return list(values)


def _build(table: dict[str, Any]) -> BuildSection:
    _check_keys(table, {"python_packages", "requirements", "system_packages"}, "build")
    packages = _string_list(table, "python_packages", "build", PIP_REQUIREMENT) \
        if "python_packages" in table else []
    requirements = None
    if "requirements" in table:
        requirements = _typed(table, "requirements", (str,), "build")
        if requirements.startswith("/") or ".." in requirements.split("/"):
            raise InvalidManifest("'build.requirements' must be a path inside the algorithm",
                                  key="build.requirements")
    if packages and requirements:
        raise InvalidManifest("use either 'build.python_packages' or 'build.requirements'",
                              key="build.requirements")
    system = _string_list(table, "system_packages", "build", APT_PACKAGE) \
        if "system_packages" in table else []
    return BuildSection(packages, requirements, system)


def _ranged(table: dict[str, Any], key: str, kinds: tuple[type, ...], low: float,
            high: float) -> Any:
    value = _typed(table, key, kinds, "resources")
    if not low <= value <= high:
        raise InvalidManifest(f"'resources.{key}' must be between {low} and {high}",
                              key=f"resources.{key}")
    return value


def _resources(table: dict[str, Any]) -> ResourcesSection:
    _check_keys(table, {"timeout_s", "memory_mb", "cpus", "network"}, "resources")
    base = ResourcesSection()
    return ResourcesSection(
        timeout_s=_ranged(table, "timeout_s", (int,), 1, MAX_TIMEOUT_S)
        if "timeout_s" in table else base.timeout_s,
        memory_mb=_ranged(table, "memory_mb", (int,), MIN_MEMORY_MB, MAX_MEMORY_MB)
        if "memory_mb" in table else base.memory_mb,
        cpus=float(_ranged(table, "cpus", (int, float), 0.1, 64))
        if "cpus" in table else base.cpus,
        network=_typed(table, "network", (bool,), "resources")
        if "network" in table else base.network,
    )


def _secrets(table: dict[str, Any]) -> SecretsSection:
    _check_keys(table, {"names", "as_env"}, "secrets")
    names = _string_list(table, "names", "secrets", SECRET_NAME) \
        if "names" in table else []
    as_env = _typed(table, "as_env", (bool,), "secrets") if "as_env" in table else False
    return SecretsSection(names, as_env)


def _models(table: dict[str, Any]) -> dict[str, str]:
    models = {}
    for key in table:
        where = f"models.{key}"
        MODEL_KEY.check(key, InvalidManifest, where, key=where)
        models[key] = MODEL_REF.check(_typed(table, key, (str,), "models"), InvalidManifest,
                                      where, key=where)
    return models


def _text(data: dict[str, Any], key: str, limit: int) -> str:
    value = str(_typed(data, key, (str,), ""))
    if len(value) > limit or not value.isprintable():
        raise InvalidManifest(f"'{key}' must be printable text of at most {limit} characters",
                              key=key)
    return value


def _catalogue(data: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "description" in data:
        found["description"] = _text(data, "description", MAX_DESCRIPTION)
    if "visibility" in data:
        found["visibility"] = _typed(data, "visibility", (str,), "")
        if found["visibility"] not in VISIBILITIES:
            raise InvalidManifest("'visibility' must be 'private' or 'public'", key="visibility")
    if "royalty_micros" in data:
        found["royalty_micros"] = _typed(data, "royalty_micros", (int,), "")
        if not 0 <= found["royalty_micros"] <= MAX_ROYALTY_MICROS:
            raise InvalidManifest(f"'royalty_micros' must be between 0 and "
                                  f"{MAX_ROYALTY_MICROS}", key="royalty_micros")
    parameters = _section(data, "parameters")
    if len(parameters) > MAX_PARAMETERS:
        raise InvalidManifest(f"'parameters' lists at most {MAX_PARAMETERS} fields",
                              key="parameters")
    for key in parameters:
        where = f"parameters.{key}"
        if not isinstance(key, str) or not key.isprintable() or not 0 < len(key) <= 100:
            raise InvalidManifest(f"'{where[:120]}': a parameter's name is printable text of "
                                  "at most 100 characters", key="parameters")
        _text({where: parameters[key]}, where, MAX_DESCRIPTION)
    if parameters:
        found["parameters"] = dict(parameters)
    return found


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    if key not in data:
        return {}
    return dict(_typed(data, key, (dict,), ""))


def parse_manifest(data: dict[str, Any]) -> Manifest:
    """Validate a decoded algorithm.toml."""
    _check_keys(data, {"name", "entrypoint", "python", "build", "resources", "secrets",
                       "models", *_CATALOGUE_DEFAULTS}, "")
    for required in ("name", "entrypoint"):
        if required not in data:
            raise InvalidManifest(f"missing required key '{required}'", key=required)
    name = _typed(data, "name", (str,), "")
    ALGORITHM_NAME.check(name, InvalidManifest, "name", key="name")
    entrypoint = ENTRYPOINT.check(_typed(data, "entrypoint", (str,), ""), InvalidManifest,
                                  "entrypoint", key="entrypoint")
    python = str(_typed(data, "python", (str,), "")) if "python" in data else "3.11"
    if python not in SUPPORTED_PYTHON:
        raise InvalidManifest(f"'python' must be one of {', '.join(SUPPORTED_PYTHON)}",
                              key="python")
    return Manifest(
        name=name,
        entrypoint=entrypoint,
        python=python,
        build=_build(_section(data, "build")),
        resources=_resources(_section(data, "resources")),
        secrets=_secrets(_section(data, "secrets")),
        models=_models(_section(data, "models")),
        **_catalogue(data),
    )


def loads_manifest(text: str) -> Manifest:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidManifest(f"algorithm.toml is not valid TOML: {exc}") from exc
    return parse_manifest(data)


def manifest_from_dict(data: dict[str, Any]) -> Manifest:
    """Rebuild a Manifest stored with `to_dict` (already validated once)."""
    return Manifest(
        name=data["name"],
        entrypoint=data["entrypoint"],
        python=data.get("python", "3.11"),
        build=BuildSection(**data.get("build", {})),
        resources=ResourcesSection(**data.get("resources", {})),
        secrets=SecretsSection(**data.get("secrets", {})),
        models=dict(data.get("models", {})),
        description=data.get("description", ""),
        visibility=data.get("visibility"),
        royalty_micros=int(data.get("royalty_micros", 0)),
        parameters=dict(data.get("parameters", {})),
    )


def check_caps(resources: ResourcesSection, *, max_memory_mb: int, max_cpus: float,
               max_timeout_s: int) -> None:
    """Refuse resources over the operator's caps, naming the cap (checked at publish)."""
    for key, value, cap in (("memory_mb", resources.memory_mb, max_memory_mb),
                            ("cpus", resources.cpus, max_cpus),
                            ("timeout_s", resources.timeout_s, max_timeout_s)):
        if value > cap:
            raise InvalidManifest(f"'resources.{key}' is {value:g}; this platform allows at "
                                  f"most {cap:g}", key=f"resources.{key}", cap=cap)
