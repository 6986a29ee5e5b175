"""Redis-backed state: job records, the registry of algorithms and builds, API keys.

The store holds no secret values, ever; translate redis errors into
StoreUnavailable here so callers see algohost errors only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import redis

from algohost.config import Settings
from algohost.errors import StoreUnavailable

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

PREFIX = "algohost:"
P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D", bound="DataclassInstance")


def _timeouts(settings: Settings) -> dict[str, Any]:
    # redis-py 8 reads with a 5 s timeout by default, which would cut a
    # `Prefer: wait` (BLPOP of up to max_wait_s) short; a dead server still
    # surfaces after the longest legitimate wait.
    return {"socket_timeout": settings.max_wait_s + 15, "socket_connect_timeout": 5,
            "health_check_interval": 30}


# redis-py's pool refuses a 101st connection at once ("Too many connections"); a burst of
# a thousand requests on one evented API process must queue for one instead.
POOL_CONNECTIONS = 100
POOL_WAIT_S = 20


def _pool(settings: Settings, **options: Any) -> redis.BlockingConnectionPool:
    return redis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_S,
        **_timeouts(settings), **options)


def connect(settings: Settings) -> redis.Redis:
    """A client that decodes replies to str (records are JSON text)."""
    return redis.Redis(connection_pool=_pool(settings, decode_responses=True))


def connect_raw(settings: Settings) -> redis.Redis:
    """A client for binary blobs (algorithm sources)."""
    return redis.Redis(connection_pool=_pool(settings))


def translate_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn redis connection failures into StoreUnavailable (503)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"the state store is unreachable: {exc}") from exc

    return wrapper


# Records are encoded and decoded field by field on the call path, where json.dumps and
# json.loads cost more in their Python wrappers (a new encoder per dumps with separators,
# two whitespace regexes per loads) than in the work. So the C encoder is made once and
# the decoder's scanner is called directly; the output is exactly json.dumps(value,
# separators=(",", ":")), and text the scanner does not take whole goes to json.loads.


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_c_encoder = json.encoder.c_make_encoder  # type: ignore[attr-defined]  # not in the stubs
_iterencode = None if _c_encoder is None else _c_encoder(
    None, _refuse, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
_encode_str = json.encoder.encode_basestring_ascii
_slow_encode = json.JSONEncoder(separators=(",", ":")).encode
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # not in the stubs


def encode_value(value: Any) -> str:
    if type(value) is str:
        return _encode_str(value)
    if _iterencode is None:
        return _slow_encode(value)
    return "".join(_iterencode(value, 0))


def decode_value(text: str) -> Any:
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the usual JSONDecodeError, or reads padded text
    return value if end == len(text) else json.loads(text)


def encode_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """Fields of a record as a Redis hash: each one JSON-encoded, so types survive."""
    return {k: encode_value(v) for k, v in fields.items()}


class RecordFields(Generic[D]):
    """One record type (a dataclass) and its Redis form: a hash with one JSON text per field.

    `typed` turns a field's JSON value into its typed value on reading (a status into its
    Enum, a manifest into a Manifest); `plain` does the reverse on writing."""

    def __init__(self, record_type: type[D], kind: str, *,
                 typed: Mapping[str, Callable[[Any], Any]] | None = None,
                 plain: Mapping[str, Callable[[Any], Any]] | None = None) -> None:
        self.record_type, self.kind = record_type, kind
        self.names = tuple(f.name for f in dataclasses.fields(record_type))
        self.known = frozenset(self.names)
        self.typed = dict(typed or {})
        self.plain = dict(plain or {})
        self._as_is = tuple(name for name in self.names if name not in self.plain)

    def encode(self, record: D) -> dict[str, str]:
        encoded = {name: encode_value(getattr(record, name)) for name in self._as_is}
        for name, to_plain in self.plain.items():
            encoded[name] = encode_value(to_plain(getattr(record, name)))
        return encoded

    def decode(self, raw: Mapping[str, str]) -> D:
        """The record from its stored fields.

        Fields it does not know (written by newer code) are skipped: writes go field by
        field, so skipping one here never erases it in Redis. Missing ones take their
        defaults."""
        known = self.known
        values = {k: decode_value(v) for k, v in raw.items() if k in known}
        for name, to_typed in self.typed.items():
            if name in values:
                values[name] = to_typed(values[name])
        return self.record_type(**values)

    def check(self, names: Iterable[str]) -> None:
        """A partial write names only fields of the record: a typo is a bug, not a new field."""
        unknown = set(names) - self.known
        if unknown:
            raise ValueError(f"a {self.kind} record has no field {sorted(unknown)}")


def lua(name: str) -> str:
    """The text of store/lua/<name>.lua, shipped as package data."""
    return resources.files("algohost.store").joinpath("lua", f"{name}.lua").read_text()


@dataclasses.dataclass(frozen=True)
class ScriptCall:
    """One call of a store script, held to be sent with others (`ScriptChain`)."""

    keys: list[str]
    args: list[Any]


CHAIN_ERROR = "error: "  # a step's result that failed, then the error's text


class ScriptChain:
    """Several scripts, one round trip: each runs in turn, as a function with its own
    KEYS and ARGV, and the chain answers with each one's result. A step that fails
    answers CHAIN_ERROR and its error; the steps after it still run (each script's
    writes are its own, as when they were sent one by one).

    A job finishing wrote its metrics, its usage entry and its slot's release with a
    script each: three round trips of the worker's, one after the other."""

    _MAIN = """
local steps = {%s}
local results, k, a = {}, 1, 2 * #steps + 1
for i, step in ipairs(steps) do
  local nk, na = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local ok, r = pcall(step, {unpack(KEYS, k, k + nk - 1)}, {unpack(ARGV, a, a + na - 1)})
  if ok then results[i] = r or false else results[i] = '%s' .. tostring(r) end
  k, a = k + nk, a + na
end
return results
"""

    def __init__(self, client: Any, *sources: str) -> None:
        steps = [f"local function step{n}(KEYS, ARGV)\n{source}\nend"
                 for n, source in enumerate(sources, 1)]
        names = ", ".join(f"step{n}" for n in range(1, len(sources) + 1))
        self.size = len(sources)
        self._script = client.register_script(
            "\n".join(steps) + self._MAIN % (names, CHAIN_ERROR))

    @translate_errors
    def __call__(self, calls: Sequence[ScriptCall]) -> list[Any]:
        if len(calls) != self.size:
            raise ValueError(f"the chain has {self.size} steps, not {len(calls)}")
        counts = [str(n) for call in calls for n in (len(call.keys), len(call.args))]
        return list(self._script(keys=[key for call in calls for key in call.keys],
                                 args=[*counts, *(arg for call in calls for arg in call.args)]))
