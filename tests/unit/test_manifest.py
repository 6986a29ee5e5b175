import pytest

from algohost.errors import InvalidManifest
from algohost.manifest import loads_manifest, manifest_from_dict

FULL = """
name = "pg"
entrypoint = "main:apply"
python = "3.11"
[build]
python_packages = ["psycopg2==2.9.*"]
system_packages = ["libpq-dev", "gcc"]
[resources]
timeout_s = 5
memory_mb = 256
cpus = 0.5
network = false
[secrets]
names = ["DB_PASSWORD"]
"""


def test_full_manifest_parses_every_section():
    m = loads_manifest(FULL)
    assert m.name == "pg"
    assert m.build.python_packages == ["psycopg2==2.9.*"]
    assert m.build.system_packages == ["libpq-dev", "gcc"]
    assert (m.resources.timeout_s, m.resources.memory_mb, m.resources.cpus) == (5, 256, 0.5)
    assert m.secrets.names == ["DB_PASSWORD"]


def test_defaults_fill_missing_sections():
    m = loads_manifest('name = "a"\nentrypoint = "m:f"\n')
    assert m.resources.timeout_s == 30 and m.resources.network is False
    assert m.build.python_packages == [] and m.secrets.names == []


def test_round_trip_through_dict():
    m = loads_manifest(FULL)
    assert manifest_from_dict(m.to_dict()) == m


@pytest.mark.parametrize("text, key", [
    ('name = "a"\nentrypoint = "m:f"\ncolour = 1\n', "colour"),
    ('name = "a"\nentrypoint = "m:f"\n[resources]\nmemory = 1\n', "resources.memory"),
    ('name = "a"\nentrypoint = "m:f"\n[resources]\ntimeout_s = "5"\n', "resources.timeout_s"),
    ('name = "a"\nentrypoint = "m:f"\n[resources]\nnetwork = 1\n', "resources.network"),
    ('name = "a"\nentrypoint = "m:f"\n[resources]\nmemory_mb = true\n', "resources.memory_mb"),
    ('name = "a"\nentrypoint = "m:f"\n[resources]\ntimeout_s = 0\n', "resources.timeout_s"),
    ('name = "a"\nentrypoint = "m:f"\n[build]\nsystem_packages = ["x; rm -rf /"]\n',
     "build.system_packages"),
    ('name = "a"\nentrypoint = "m:f"\n[build]\npython_packages = ["--index-url=x"]\n',
     "build.python_packages"),
    ('name = "a"\nentrypoint = "m:f"\n[secrets]\nnames = ["lower"]\n', "secrets.names"),
    ('name = "Bad Name"\nentrypoint = "m:f"\n', "name"),
    ('name = "a"\nentrypoint = "nocolon"\n', "entrypoint"),
    ('entrypoint = "m:f"\n', "name"),
    ('name = "a"\nentrypoint = "m:f"\npython = "2.7"\n', "python"),
    ('name = "a"\nentrypoint = "m:f"\nbuild = 3\n', "build"),
    # A newline or control character never reaches a key, a Vault path or a Dockerfile line.
    ('name = "demo\\n"\nentrypoint = "m:f"\n', "name"),
    ('name = "a"\nentrypoint = "m:f\\n"\n', "entrypoint"),
    ('name = "a"\nentrypoint = "m:f"\n[build]\npython_packages = ["numpy\\nRUN id"]\n',
     "build.python_packages"),
    ('name = "a"\nentrypoint = "m:f"\n[build]\npython_packages = ["numpy\\r"]\n',
     "build.python_packages"),
    ('name = "a"\nentrypoint = "m:f"\n[build]\nsystem_packages = ["gcc\\n"]\n',
     "build.system_packages"),
    ('name = "a"\nentrypoint = "m:f"\n[secrets]\nnames = ["DB_PASSWORD\\n"]\n', "secrets.names"),
])
def test_invalid_manifest_names_the_key(text, key):
    with pytest.raises(InvalidManifest) as info:
        loads_manifest(text)
    assert info.value.details["key"] == key
    assert key.split(".")[-1] in info.value.message
    assert info.value.http_status == 400


def test_requirements_and_packages_are_exclusive():
    text = ('name = "a"\nentrypoint = "m:f"\n[build]\n'
            'requirements = "r.txt"\npython_packages = ["x"]\n')
    with pytest.raises(InvalidManifest):
        loads_manifest(text)


def test_requirements_path_must_stay_inside():
    with pytest.raises(InvalidManifest):
        loads_manifest('name = "a"\nentrypoint = "m:f"\n[build]\nrequirements = "../r.txt"\n')


def test_broken_toml_is_an_invalid_manifest():
    with pytest.raises(InvalidManifest, match="not valid TOML"):
        loads_manifest("name = ")


CATALOGUE = '''name = "hello"
entrypoint = "main:apply"
description = "Says hello"
visibility = "public"
royalty_micros = 2500

[parameters]
name = "who to greet"
'''


def test_catalogue_keys_parse_and_survive_the_stored_round_trip():
    manifest = loads_manifest(CATALOGUE)
    assert (manifest.description, manifest.visibility, manifest.royalty_micros,
            manifest.parameters) == ("Says hello", "public", 2500, {"name": "who to greet"})
    assert manifest_from_dict(manifest.to_dict()) == manifest


def test_a_manifest_without_catalogue_keys_stores_none_of_them():
    data = loads_manifest('name = "hello"\nentrypoint = "main:apply"\n').to_dict()
    assert not {"description", "visibility", "royalty_micros", "parameters"} & set(data)


@pytest.mark.parametrize("extra, key", [
    ('visibility = "everyone"', "visibility"), ("royalty_micros = -5", "royalty_micros"),
    ("royalty_micros = true", "royalty_micros"), ('description = "a\\nb"', "description"),
    ("[parameters]\nname = 3", "parameters.name")])
def test_a_bad_catalogue_key_is_refused_naming_it(extra, key):
    with pytest.raises(InvalidManifest) as caught:
        loads_manifest(f'name = "hello"\nentrypoint = "main:apply"\n{extra}\n')
    assert caught.value.details["key"] == key
