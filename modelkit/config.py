"""Settings from Ollama's environment variables (``OLLAMA_*``), read once and passed down.

Parsing follows Ollama's envconfig (reference §8): surrounding whitespace and quotes are
stripped; booleans use Go's ParseBool and an unparsable non-empty value counts as true;
unsigned integers that do not parse log a warning and keep their default; durations are Go
durations (``5m``, ``1h30m``, ``300ms``) or plain integer seconds.

Durations are float seconds here; "forever" is ``math.inf``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from modelkit import OLLAMA_API_VERSION

log = logging.getLogger(__name__)

_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}

FOREVER = math.inf
"""A keep-alive / timeout that never runs out."""

TRACE = 5
"""The Python logging level for Ollama's TRACE (``OLLAMA_DEBUG=2``)."""

DEFAULT_PORT = 11434
DEFAULT_KEEP_ALIVE = 300.0
DEFAULT_LOAD_TIMEOUT = 300.0
DEFAULT_NUM_PARALLEL = 1
DEFAULT_MAX_LOADED_MODELS = 3  # Ollama's automatic value on a CPU-only machine
DEFAULT_MAX_QUEUE = 512
DEFAULT_CONTEXT_LENGTH = 4096  # Ollama's automatic value below 23 GiB of VRAM (none here)
DEFAULT_SHUTDOWN_TIMEOUT = 5.0  # seconds in-flight requests get after SIGTERM/SIGINT
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024  # JSON bodies; blobs are streamed, not read whole

_INT_RE = re.compile(r"[+-]?[0-9]+")  # Go's strconv.ParseInt(s, 10, _) syntax
_UINT_RE = re.compile(r"[0-9]+")  # Go's strconv.ParseUint(s, 10, _) syntax
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


# -- primitive readers (Ollama's envconfig.Var / Bool / Uint) --------------------------------


def env_value(environ: Mapping[str, str], key: str) -> str:
    """An env var as Ollama reads it: trimmed of whitespace, then of quotes."""
    return environ.get(key, "").strip().strip("\"'")


def env_bool(environ: Mapping[str, str], key: str, default: bool = False) -> bool:
    """Go's ParseBool on the value; unset/empty → ``default``; unparsable → true."""
    value = env_value(environ, key)
    if not value:
        return default
    # Ollama treats any non-empty value that is not a Go "false" (even one ParseBool
    # rejects) as true.
    return value not in _GO_FALSE


def env_tristate(environ: Mapping[str, str], key: str) -> bool | None:
    """Like :func:`env_bool`, but unset/empty is ``None`` ("let the runtime decide")."""
    return env_bool(environ, key) if env_value(environ, key) else None


def env_uint(environ: Mapping[str, str], key: str, default: int) -> int:
    """A base-10 unsigned integer; a value that does not parse warns and gives ``default``."""
    value = env_value(environ, key)
    if not value:
        return default
    if _UINT_RE.fullmatch(value) and int(value) <= _UINT64_MAX:
        return int(value)
    log.warning(
        "invalid environment variable, using default: %s=%r (default %d)", key, value, default
    )
    return default


def _go_int(value: str) -> int | None:
    """Go's ``strconv.ParseInt(value, 10, 64)``, or None where it fails."""
    if _INT_RE.fullmatch(value):
        n = int(value)
        if _INT64_MIN <= n <= _INT64_MAX:
            return n
    return None


# -- durations (Go's time.ParseDuration / Duration.String) ----------------------------------

_NS = 1
_US = 1_000
_MS = 1_000_000
_S = 1_000_000_000
_DURATION_UNITS = {
    "ns": _NS,
    "us": _US,
    "µs": _US,  # U+00B5 micro sign
    "μs": _US,  # U+03BC Greek mu
    "ms": _MS,
    "s": _S,
    "m": 60 * _S,
    "h": 3600 * _S,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def _go_quote(text: str) -> str:
    """Roughly Go's ``strconv.Quote``, for error texts that match Go's."""
    return json.dumps(text, ensure_ascii=False)


def _leading_fraction(digits: str) -> tuple[int, float]:
    """Go's ``leadingFraction``: digits accumulate until the uint64 would overflow."""
    x, scale = 0, 1.0
    for c in digits:
        if x > _INT64_MAX // 10:
            break
        y = x * 10 + int(c)
        if y > 1 << 63:
            break
        x, scale = y, scale * 10
    return x, scale


def parse_duration_ns(text: str) -> int:
    """Go's ``time.ParseDuration``: integer nanoseconds, or ValueError.

    ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`` with units ns, us/µs/μs, ms, s, m, h; a bare ``0``
    (optionally signed) is the only unit-less value; the result must fit in an int64.
    """
    s = text
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {_go_quote(text)}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        assert m is not None  # every group may be empty
        whole, frac, unit_name = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            # no digits at all (".s", "-.s") or a unit with no number ("s", "1s.")
            raise ValueError(f"time: invalid duration {_go_quote(text)}")
        if not unit_name:
            raise ValueError(f"time: missing unit in duration {_go_quote(text)}")
        unit = _DURATION_UNITS.get(unit_name)
        if unit is None:
            raise ValueError(
                f"time: unknown unit {_go_quote(unit_name)} in duration {_go_quote(text)}"
            )
        value = int(whole or "0") * unit
        if frac:
            f, scale = _leading_fraction(frac)
            # Go scales the fraction in float64 and truncates; so do we.
            value += int(f * (unit / scale))
        total += value
        if total > 1 << 63:
            raise ValueError(f"time: invalid duration {_go_quote(text)}")
        pos = m.end()
    if neg:
        return -total
    if total > _INT64_MAX:
        raise ValueError(f"time: invalid duration {_go_quote(text)}")
    return total


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` in float seconds (``"1h30m"`` → 5400.0); ValueError if bad."""
    return parse_duration_ns(text) / _S


def parse_keep_alive(text: str) -> float:
    """A Go duration or plain integer seconds (the OLLAMA_KEEP_ALIVE rule); ValueError if bad.

    (The API's ``keep_alive`` differs: a JSON number is seconds, a string must be a Go
    duration — :func:`parse_duration`.)

    The sign is kept: callers decide what a negative value means (usually "forever").
    """
    try:
        return parse_duration(text)
    except ValueError:
        n = _go_int(text)
        if n is None:
            raise
        return float(n)


def _frac(value: int, digits: int) -> str:
    whole, rest = divmod(value, 10**digits)
    tail = str(rest).rjust(digits, "0").rstrip("0")
    return f"{whole}.{tail}" if tail else str(whole)


def format_duration(seconds: float) -> str:
    """Go's ``Duration.String`` (``300`` → ``"5m0s"``, ``0.0015`` → ``"1.5ms"``).

    Infinite values (this module's "forever") print as ``"forever"``.
    """
    if math.isinf(seconds):
        return "forever" if seconds > 0 else "-forever"
    ns = round(seconds * _S)
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns == 0:
        return "0s"
    if ns < _S:
        if ns < _US:
            return f"{sign}{ns}ns"
        if ns < _MS:
            return f"{sign}{_frac(ns, 3)}µs"
        return f"{sign}{_frac(ns, 6)}ms"
    hours, rest = divmod(ns, 3600 * _S)
    minutes, rest = divmod(rest, 60 * _S)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{_frac(rest, 9)}s"


def _env_duration(
    environ: Mapping[str, str], key: str, default: float, *, zero_is_forever: bool
) -> float:
    """OLLAMA_KEEP_ALIVE / OLLAMA_LOAD_TIMEOUT: invalid → default; negative → forever
    (and 0 too for the load timeout)."""
    value = env_value(environ, key)
    result = default
    if value:
        try:
            result = parse_keep_alive(value)
        except ValueError:
            log.warning("invalid duration, using default: %s=%r", key, value)
    if result < 0 or (zero_is_forever and result == 0):
        return FOREVER
    return result


def _env_shutdown_timeout(environ: Mapping[str, str]) -> float:
    """MODELKIT_SHUTDOWN_TIMEOUT: a Go duration or integer seconds; invalid or negative →
    the default."""
    value = env_value(environ, "MODELKIT_SHUTDOWN_TIMEOUT")
    if not value:
        return DEFAULT_SHUTDOWN_TIMEOUT
    try:
        result = parse_keep_alive(value)
    except ValueError:
        result = -1.0
    if result < 0:
        log.warning("invalid duration, using default: MODELKIT_SHUTDOWN_TIMEOUT=%r", value)
        return DEFAULT_SHUTDOWN_TIMEOUT
    return result


def parse_preload(value: str) -> tuple[str, ...]:
    """MODELKIT_PRELOAD: comma-separated model names (blanks and repeats dropped)."""
    names = (part.strip() for part in value.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


# -- OLLAMA_HOST ------------------------------------------------------------------------------


def _go_split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``; None where it returns an error."""
    i = hostport.rfind(":")
    if i < 0:
        return None  # missing port
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != i:
            return None  # missing ']', missing port, or too many colons
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            return None  # too many colons
    if "[" in hostport[j:] or "]" in hostport[k:]:
        return None
    return host, hostport[i + 1 :]


def _go_join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _go_parse_ip(text: str) -> str | None:
    """Go's ``net.ParseIP(text).String()``, or None where it is not an IP address."""
    if "%" in text:  # Go's ParseIP has no zones
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)  # Go prints v4-in-v6 addresses as plain IPv4
    return str(ip)


@dataclass(frozen=True)
class HostURL:
    """OLLAMA_HOST parsed (``host`` has no IPv6 brackets; ``path`` no leading slash)."""

    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str = ""

    @property
    def netloc(self) -> str:
        """``host:port``, with IPv6 hosts in brackets (Go's ``net.JoinHostPort``)."""
        return _go_join_host_port(self.host, self.port)

    @property
    def url(self) -> str:
        path = f"/{self.path}" if self.path else ""
        return f"{self.scheme}://{self.netloc}{path}"

    def __str__(self) -> str:
        return self.url

    def connectable(self) -> HostURL:
        """The address a client should dial: an unspecified host (``0.0.0.0``, ``::``) becomes
        loopback (``127.0.0.1``, ``::1``) as in Ollama's ``ConnectableHost``. An empty host
        (``OLLAMA_HOST=:1234``) also becomes ``127.0.0.1``, which Go's dialer does implicitly.
        """
        if not self.host:
            return replace(self, host="127.0.0.1")
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return self
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_unspecified:
            return self
        return replace(self, host="127.0.0.1" if ip.version == 4 else "::1")


def parse_host(value: str) -> HostURL:
    """Ollama's ``envconfig.Host()`` on an OLLAMA_HOST value (quotes/whitespace stripped first).

    No scheme → ``http`` with port 11434 (exactly ``ollama.com`` → ``https://ollama.com:443``);
    ``http://`` defaults to port 80, ``https://`` to 443, other schemes to 11434. What follows
    the first ``/`` after host:port is the path. An unsplittable host:port is all host (IPv6
    brackets stripped, empty → 127.0.0.1). A port outside 0–65535 warns and uses the default.
    """
    s = value.strip().strip("\"'").strip()
    default_port = DEFAULT_PORT
    scheme, sep, hostport = s.partition("://")
    if not sep:
        scheme, hostport = "http", s
        if s == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443

    hostport, _, path = hostport.partition("/")
    split = _go_split_host_port(hostport)
    if split is None:
        host = _go_parse_ip(hostport.strip("[]")) or hostport or "127.0.0.1"
        port_text = str(default_port)
    else:
        host, port_text = split

    n = _go_int(port_text)
    if n is None or not 0 <= n <= 65535:
        log.warning("invalid port, using default: port=%r default=%d", port_text, default_port)
        n = default_port
    return HostURL(scheme=scheme, host=host, port=n, path=path)


# -- OLLAMA_ORIGINS ---------------------------------------------------------------------------


def _default_origins() -> tuple[str, ...]:
    origins: list[str] = []
    for host in ("localhost", "127.0.0.1", "0.0.0.0"):
        origins += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    origins += ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]
    return tuple(origins)


DEFAULT_ORIGINS = _default_origins()


def parse_origins(value: str) -> tuple[str, ...]:
    """OLLAMA_ORIGINS: the user's comma-separated values (kept verbatim), then the defaults."""
    user = value.split(",") if value else []
    return (*user, *DEFAULT_ORIGINS)


# -- OLLAMA_DEBUG -----------------------------------------------------------------------------


def parse_debug(value: str) -> int:
    """OLLAMA_DEBUG as a verbosity: ``""``/false → 0 (INFO), true/``1`` → 1 (DEBUG),
    ``2`` → 2 (TRACE), ``-1`` → -1 (WARN), ``-2`` → -2 (ERROR); anything else → 0."""
    if value in _GO_TRUE:
        return 1
    return _go_int(value) or 0


_SLOG_NAMES = {-8: "TRACE", -4: "DEBUG", 0: "INFO", 4: "WARN", 8: "ERROR"}


# -- Settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The OLLAMA_* settings modelkit honours, with Ollama's defaults (CPU-only machine).

    Automatic values are resolved: ``max_loaded_models`` 0 → 3, ``context_length`` 0 → 4096,
    ``num_parallel`` 0 → 1. Durations are seconds (``math.inf`` = forever).
    """

    models: Path
    noprune: bool = False
    host: HostURL = field(default_factory=HostURL)
    origins: tuple[str, ...] = DEFAULT_ORIGINS
    keep_alive: float = DEFAULT_KEEP_ALIVE
    load_timeout: float = DEFAULT_LOAD_TIMEOUT
    num_parallel: int = DEFAULT_NUM_PARALLEL
    max_loaded_models: int = DEFAULT_MAX_LOADED_MODELS
    max_queue: int = DEFAULT_MAX_QUEUE
    context_length: int = DEFAULT_CONTEXT_LENGTH
    flash_attention: bool | None = None
    kv_cache_type: str = ""
    debug: int = 0
    tmpdir: Path | None = None
    nohistory: bool = False
    ollama_version: str = OLLAMA_API_VERSION
    amx: bool = False
    preload: tuple[str, ...] = ()
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    api_keys: str = field(default="", repr=False)  # secrets: never in a repr or a log
    api_keys_file: Path | None = None
    metrics_public: bool = False
    max_num_ctx: int = 0  # 0: the model's trained context is the only cap
    max_num_predict: int = 0  # 0: no cap
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_requests_per_minute: int = 0  # per API key (per client address without keys); 0: off
    max_images: int = 8  # images in one request
    max_image_bytes: int = 20 * 1024 * 1024  # one image, decoded

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        models = env_value(env, "OLLAMA_MODELS")
        tmpdir = env_value(env, "OLLAMA_TMPDIR")
        return cls(
            models=Path(models).expanduser() if models else Path.home() / ".ollama" / "models",
            noprune=env_bool(env, "OLLAMA_NOPRUNE"),
            host=parse_host(env.get("OLLAMA_HOST", "")),
            origins=parse_origins(env_value(env, "OLLAMA_ORIGINS")),
            keep_alive=_env_duration(
                env, "OLLAMA_KEEP_ALIVE", DEFAULT_KEEP_ALIVE, zero_is_forever=False
            ),
            load_timeout=_env_duration(
                env, "OLLAMA_LOAD_TIMEOUT", DEFAULT_LOAD_TIMEOUT, zero_is_forever=True
            ),
            num_parallel=env_uint(env, "OLLAMA_NUM_PARALLEL", DEFAULT_NUM_PARALLEL)
            or DEFAULT_NUM_PARALLEL,
            max_loaded_models=env_uint(env, "OLLAMA_MAX_LOADED_MODELS", 0)
            or DEFAULT_MAX_LOADED_MODELS,
            max_queue=env_uint(env, "OLLAMA_MAX_QUEUE", DEFAULT_MAX_QUEUE),
            context_length=env_uint(env, "OLLAMA_CONTEXT_LENGTH", 0) or DEFAULT_CONTEXT_LENGTH,
            flash_attention=env_tristate(env, "OLLAMA_FLASH_ATTENTION"),
            kv_cache_type=env_value(env, "OLLAMA_KV_CACHE_TYPE"),
            debug=parse_debug(env_value(env, "OLLAMA_DEBUG")),
            tmpdir=Path(tmpdir).expanduser() if tmpdir else None,
            nohistory=env_bool(env, "OLLAMA_NOHISTORY"),
            ollama_version=env_value(env, "MODELKIT_OLLAMA_VERSION") or OLLAMA_API_VERSION,
            amx=env_bool(env, "MODELKIT_AMX"),
            preload=parse_preload(env_value(env, "MODELKIT_PRELOAD")),
            shutdown_timeout=_env_shutdown_timeout(env),
            api_keys=env_value(env, "MODELKIT_API_KEYS"),
            api_keys_file=_env_path(env, "MODELKIT_API_KEYS_FILE"),
            metrics_public=env_bool(env, "MODELKIT_METRICS_PUBLIC"),
            max_num_ctx=env_uint(env, "MODELKIT_MAX_NUM_CTX", 0),
            max_num_predict=env_uint(env, "MODELKIT_MAX_NUM_PREDICT", 0),
            max_body_bytes=env_uint(env, "MODELKIT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_requests_per_minute=env_uint(env, "MODELKIT_MAX_REQUESTS_PER_MINUTE", 0),
            max_images=env_uint(env, "MODELKIT_MAX_IMAGES", 8),
            max_image_bytes=env_uint(env, "MODELKIT_MAX_IMAGE_BYTES", 20 * 1024 * 1024),
        )

    @property
    def connectable_url(self) -> str:
        """The URL a client should use to reach this server (unspecified host → loopback)."""
        return self.host.connectable().url

    @property
    def slog_level(self) -> int:
        """Ollama's slog level: INFO 0, DEBUG -4, TRACE -8, WARN 4, ERROR 8."""
        return -4 * self.debug

    @property
    def log_level(self) -> int:
        """The Python ``logging`` level for :attr:`debug` (TRACE is :data:`TRACE`, 5)."""
        if self.debug >= 2:
            return TRACE
        return logging.INFO - 10 * self.debug

    def describe(self) -> list[tuple[str, str, str]]:
        """``(variable, current value, help)`` rows for ``modelkit serve --help``."""
        debug = _SLOG_NAMES.get(self.slog_level, str(self.slog_level))
        flash = "auto" if self.flash_attention is None else str(self.flash_attention).lower()
        return [
            ("OLLAMA_DEBUG", debug, "Show additional debug information (e.g. OLLAMA_DEBUG=1)"),
            ("OLLAMA_HOST", self.host.url, "IP Address for the server (default 127.0.0.1:11434)"),
            (
                "OLLAMA_CONTEXT_LENGTH",
                str(self.context_length),
                "Context length to use unless otherwise specified (default: 4096)",
            ),
            (
                "OLLAMA_KEEP_ALIVE",
                format_duration(self.keep_alive),
                'The duration that models stay loaded in memory (default "5m")',
            ),
            (
                "OLLAMA_MAX_LOADED_MODELS",
                str(self.max_loaded_models),
                "Maximum number of loaded models (default: 3)",
            ),
            ("OLLAMA_MAX_QUEUE", str(self.max_queue), "Maximum number of queued requests"),
            ("OLLAMA_MODELS", str(self.models), "The path to the models directory"),
            (
                "OLLAMA_NUM_PARALLEL",
                str(self.num_parallel),
                "Maximum number of parallel requests per model",
            ),
            ("OLLAMA_NOPRUNE", _bool_text(self.noprune), "Do not prune model blobs on startup"),
            ("OLLAMA_NOHISTORY", _bool_text(self.nohistory), "Do not preserve readline history"),
            (
                "OLLAMA_ORIGINS",
                ",".join(self.origins),
                "A comma separated list of allowed origins",
            ),
            ("OLLAMA_FLASH_ATTENTION", flash, "Enable flash attention (default: auto)"),
            (
                "OLLAMA_KV_CACHE_TYPE",
                self.kv_cache_type or "f16",
                "Quantization type for the K/V cache (default: f16)",
            ),
            (
                "OLLAMA_LOAD_TIMEOUT",
                format_duration(self.load_timeout),
                'How long to allow model loads to stall before giving up (default "5m")',
            ),
            (
                "OLLAMA_TMPDIR",
                str(self.tmpdir) if self.tmpdir else "",
                "Location for temporary files",
            ),
            (
                "MODELKIT_AMX",
                _bool_text(self.amx),
                "Let llama.cpp use its AMX kernels where built in (off: they crash many CPUs)",
            ),
            (
                "MODELKIT_OLLAMA_VERSION",
                self.ollama_version,
                "The Ollama version /api/version reports (clients gate features on it)",
            ),
            (
                "MODELKIT_PRELOAD",
                ",".join(self.preload),
                "Models to load at start-up and keep loaded (comma separated; see /readyz)",
            ),
            (
                "MODELKIT_SHUTDOWN_TIMEOUT",
                format_duration(self.shutdown_timeout),
                'How long in-flight requests may run on after SIGTERM (default "5s")',
            ),
            (
                "MODELKIT_API_KEYS",
                "(set)" if self.api_keys else "",
                "API keys (key or name:key, comma separated, admin scope); none: no auth",
            ),
            (
                "MODELKIT_API_KEYS_FILE",
                str(self.api_keys_file) if self.api_keys_file else "",
                "File of 'NAME SHA256 SCOPE' lines (modelkit keys add); scopes inference, admin",
            ),
            (
                "MODELKIT_METRICS_PUBLIC",
                _bool_text(self.metrics_public),
                "Serve /metrics without a key when API keys are on",
            ),
            (
                "MODELKIT_MAX_NUM_CTX",
                str(self.max_num_ctx),
                "Largest num_ctx a request may ask for (0: the model's trained context)",
            ),
            (
                "MODELKIT_MAX_NUM_PREDICT",
                str(self.max_num_predict),
                "Largest num_predict a request may ask for (0: no limit)",
            ),
            (
                "MODELKIT_MAX_BODY_BYTES",
                str(self.max_body_bytes),
                "Largest JSON request body in bytes (413 beyond)",
            ),
            (
                "MODELKIT_MAX_REQUESTS_PER_MINUTE",
                str(self.max_requests_per_minute),
                "Requests a minute per API key, or per client address (0: no limit; 429 beyond)",
            ),
            ("MODELKIT_MAX_IMAGES", str(self.max_images), "Most images in one request"),
            (
                "MODELKIT_MAX_IMAGE_BYTES",
                str(self.max_image_bytes),
                "Largest image in bytes (decoded)",
            ),
        ]


def _env_path(environ: Mapping[str, str], key: str) -> Path | None:
    value = env_value(environ, key)
    return Path(value).expanduser() if value else None


def _bool_text(value: bool) -> str:
    return "true" if value else "false"
