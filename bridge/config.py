"""Configuration: one YAML file, `${VAR}` expanded, parsed once into an immutable model."""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Optional
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from bridge.core.errors import ConfigError

if TYPE_CHECKING:
    from bridge.core.platform import Platform

CONFIG_ENV = "BIK_BRIDGE_CONFIG"
ENDPOINTS = ("placeOrder", "getOrder")


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
# Query parameters redis-py reads as numbers: anything else there fails only when the first connection is made.
REDIS_NUMBER_PARAMETERS = {"db": int, "max_connections": int, "socket_read_size": int, "health_check_interval": int,
                           "protocol": int, "socket_timeout": float, "socket_connect_timeout": float,
                           "timeout": float}
# Bik does not publish how long it waits for placeOrder; the defaults keep the bridge's worst case under this.
PLACE_ORDER_TARGET_SECONDS = 25.0


def redis_url_problem(url: str) -> Optional[str]:
    """What makes a Redis URL unusable, in words that never repeat its password; None when it is usable."""
    text = url.strip()
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in REDIS_SCHEMES:
        return "must start with " + ", ".join(f"{name}://" for name in REDIS_SCHEMES)
    try:
        parts = urlsplit(text)
    except ValueError:  # an unbalanced [ of an IPv6 address
        return "is not a valid URL"
    hosts = parts.netloc.rpartition("@")[2]
    path = [segment for segment in parts.path.split("/") if segment]
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        number = REDIS_NUMBER_PARAMETERS.get(name)
        try:
            if number is not None:
                number(value)
        except ValueError:
            return f"has a query parameter {name} that is not a number"
    if scheme == "unix":
        return None if path else "needs the socket's path: unix:///path/to/redis.sock"
    if scheme.endswith("+cluster"):
        addresses = [item for item in hosts.split(",") if item]
        if not addresses or not all(_address_usable(item) for item in addresses):
            return "needs host[:port][,host[:port]...] of the cluster's nodes: redis+cluster://host:6379"
        return "has a path, but a cluster has database 0 only: redis+cluster://host:6379" if path else None
    if scheme.endswith("+sentinel"):
        addresses = [item for item in hosts.split(",") if item]
        if not addresses or not all(_address_usable(item) for item in addresses):
            return "needs host[:port][,host[:port]...] of the sentinels: redis+sentinel://host:26379/service"
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            return "needs the path /service or /service/db: redis+sentinel://host:26379/service"
        return None
    if not _address_usable(hosts):
        return f"needs a host and, if any, a port from 1 to 65535: {scheme}://host:6379/0"
    if len(path) > 1 or (path and not path[0].isdigit()):
        return f"has a path that is not a database number: {scheme}://host:6379/0"
    return None


def _address_usable(item: str) -> bool:
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        if rest and not rest.startswith(":"):
            return False
        port = rest[1:]
    else:
        host, _, port = item.partition(":")
    return bool(host) and (not port or (port.isdigit() and 1 <= int(port) <= 65535))


def mask_url(url: str) -> str:
    """The URL with its password (and a Sentinel password) masked, everything else as given."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "**********"
    shown = url
    if password is not None:
        userinfo, _, hosts = parts.netloc.rpartition("@")
        shown = shown.replace(parts.netloc, f"{userinfo.partition(':')[0]}:****@{hosts}", 1)
    return re.sub(r"([?&]sentinel_password=)[^&#]*", r"\1****", shown)


# The core's keys that name files, made absolute when the config loads; each platform names its own.
PATH_KEYS = (("idempotency", "sqlite_path"),)


def resolve_path(path: str, base_dir: Path) -> str:
    """A relative file path made absolute against `base_dir`; SQLite's special names are left alone."""
    if path == ":memory:" or path.startswith("file:"):
        return path
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else base_dir / candidate)


class Section(BaseModel):
    """A config section: unknown keys are refused, and nothing changes it once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)
    # Connections one worker serves at once (gevent): each waiting call, on its client or the store, holds a greenlet.
    worker_connections: int = Field(1000, ge=1, le=100_000)
    # A request's head and body must arrive within this of its first byte, or it is answered 408 and closed.
    read_timeout_seconds: float = Field(10.0, gt=0, le=300)
    base_path: str = ""
    max_body_bytes: int = Field(1024 * 1024, ge=1024)

    @model_validator(mode="before")
    @classmethod
    def _no_threads(cls, data: Any) -> Any:
        # A key that would load and do nothing would lie about the server: say what replaced it.
        if isinstance(data, dict) and "threads" in data:
            raise ValueError("threads is gone: each worker serves its connections as greenlets; set "
                             "server.worker_connections (connections one worker serves at once) instead")
        return data

    @model_validator(mode="after")
    def _normalise_base_path(self) -> "ServerConfig":
        path = self.base_path.strip()
        if path.strip("/") and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+/?", "/" + path.lstrip("/")):
            raise ValueError("base_path must look like /bik or /api/bik")
        object.__setattr__(self, "base_path", ("/" + path.strip("/")) if path.strip("/") else "")
        return self

    def is_loopback(self) -> bool:
        """Whether the server listens on this host only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class AuthConfig(Section):
    scheme: Literal["none", "bearer", "api_key", "basic"] = "none"
    token: Optional[SecretStr] = None
    header: str = "X-Api-Key"
    username: Optional[str] = None
    password: Optional[SecretStr] = None

    @model_validator(mode="after")
    def _credentials_present(self) -> "AuthConfig":
        if self.scheme in ("bearer", "api_key") and not (self.token and self.token.get_secret_value()):
            raise ValueError(f"scheme {self.scheme} needs a non-empty token")
        if self.scheme == "basic" and not (self.username and self.password and self.password.get_secret_value()):
            raise ValueError("scheme basic needs username and password")
        if self.scheme == "api_key" and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.header):
            raise ValueError("header must be a plain HTTP header name")
        return self


class ShopConfig(Section):
    """The merchant's shop, under the YAML key `store`: its currency, how its orders are named and read."""

    currency: str = Field("INR", min_length=3, max_length=3)
    # None: the platform's default, "#{id}", or "#{number}" on a platform whose id is internal and whose
    # order number is what the merchant and the customer see.
    name_format: Optional[str] = None
    invoice_url_template: Optional[str] = None
    get_order_scope: Literal["bridge", "all"] = "bridge"
    get_order_cache_seconds: float = Field(0, ge=0, le=3600)

    @model_validator(mode="after")
    def _templates_use_known_fields(self) -> "ShopConfig":
        for name in ("name_format", "invoice_url_template"):
            template = getattr(self, name)
            if template is None:
                continue
            for field_name in re.findall(r"\{([^{}]*)\}", template):
                if field_name not in ("id", "number", "draft_id"):
                    raise ValueError(f"{name} may use {{id}}, {{number}} and {{draft_id}}, not {{{field_name}}}")
            try:
                # A stray brace or a bad format spec would otherwise fail only once an order exists.
                template.format(id="1001", number="1001", draft_id="nb_1")
            except (ValueError, KeyError, IndexError, AttributeError) as exc:
                raise ValueError(f"{name} is not a valid template: {exc}") from None
        return self


class IdempotencyConfig(Section):
    backend: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str = "./bik-bridge.db"
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    ttl_seconds: int = Field(30 * 24 * 3600, ge=3600)
    # A duplicate's wait for the draft's owner comes out of the call's one upstream budget: see
    # Config.place_order_worst_case_seconds.
    wait_seconds: float = Field(10, ge=0, le=60)
    on_mismatch: Literal["replay", "reject"] = "replay"
    namespace: Optional[str] = None  # default: bik-bridge:<platform>:<store id>
    # The lease outlasts the upstream budget by this much, so no owner's create can outlive its lease.
    lease_grace_seconds: float = Field(5, gt=0, le=300)
    # Look each new draft up on the platform before creating it: a record can be lost (a Redis restarted without
    # persistence, a key evicted, a failover, a SQLite file on an ephemeral disk) and only the platform still
    # knows the order. Costs one read per order; turning it off lets any of those losses make a second order.
    lookup_before_create: bool = True

    @field_validator("redis_url")
    @classmethod
    def _redis_url_usable(cls, value: SecretStr) -> SecretStr:
        problem = redis_url_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value


class UpstreamConfig(Section):
    timeout_seconds: float = Field(10, gt=0, le=120)
    connect_timeout_seconds: float = Field(3.05, gt=0, le=60)
    total_timeout_seconds: float = Field(20, gt=0, le=300)
    max_attempts: int = Field(4, ge=1, le=10)
    rate_limit_wait_cap_seconds: float = Field(15, ge=0, le=120)
    pool_size: int = Field(16, ge=1, le=256)


class OverflowConfig(Section):
    """`placement: overflow`: how much the bridge accepts before it answers 503 again."""

    # Queued drafts not yet placed; at this many, a new one the quota cannot take gets 503 with Retry-After.
    max_queued: int = Field(1000, ge=1, le=1_000_000)
    # Once the oldest unplaced draft has waited this long, new ones get 503: the queue is not draining.
    max_age_seconds: float = Field(600, gt=0, le=7 * 24 * 3600)


class LoggingConfig(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MetricsConfig(Section):
    enabled: bool = True
    token: Optional[SecretStr] = None  # when set, GET /metrics needs `Authorization: Bearer <token>`


class Config(Section):
    """The core's sections; `config_model` adds one section per registered platform, named like it."""

    platforms: ClassVar[Mapping[str, "Platform"]] = MappingProxyType({})
    platform: str  # one of `platforms`: config_model narrows it to their names
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    auth_overrides: dict[Literal["placeOrder", "getOrder"], AuthConfig] = {}
    store: ShopConfig = ShopConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    # direct: placeOrder answers once the store has the order. overflow: an order the store's quota cannot take now
    # is kept and answered at once with the bridge's own id, then placed within the quota (docs/reliability.md).
    placement: Literal["direct", "overflow"] = "direct"
    overflow: OverflowConfig = OverflowConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()

    @model_validator(mode="after")
    def _platform_section_present(self) -> "Config":
        chosen = self.platforms.get(self.platform)
        if chosen is not None and chosen.section_required() and self.platform_settings() is None:
            raise ValueError(f"platform is {self.platform} but the {self.platform} section is missing")
        if self.upstream.timeout_seconds > self.upstream.total_timeout_seconds:
            raise ValueError("upstream.timeout_seconds must not exceed upstream.total_timeout_seconds")
        return self

    @model_validator(mode="after")
    def _paths_absolute(self, info: ValidationInfo) -> "Config":
        # A relative path written in a file means the same wherever the bridge starts: it is taken from the
        # file's folder. A built-in default (./bik-bridge.db) is taken from the working folder, where the
        # Docker image keeps its volume.
        file_dir = (info.context or {}).get("base_dir")
        platform_keys = [(name, key) for name, platform in self.platforms.items() for key in platform.path_keys]
        for section_name, key in [*PATH_KEYS, *platform_keys]:
            section = getattr(self, section_name)
            path = getattr(section, key, None) if section is not None else None
            if not path:
                continue
            base_dir = Path(file_dir) if file_dir and key in section.model_fields_set else Path.cwd()
            object.__setattr__(self, section_name, section.model_copy(update={key: resolve_path(path, base_dir)}))
        return self

    def auth_for(self, endpoint: str) -> AuthConfig:
        """The auth scheme one endpoint uses."""
        return self.auth_overrides.get(endpoint, self.auth)

    def platform_settings(self, name: Optional[str] = None) -> Any:
        """The section of the chosen platform (or of `name`): None when the file leaves it out."""
        return getattr(self, name or self.platform)

    def store_scope(self) -> str:
        """Which store this config speaks for: keeps idempotency keys apart in a shared Redis."""
        # The platform's name comes first, so two platforms can never name a store alike.
        return f"{self.platform}:{self.platforms[self.platform].store_scope(self.platform_settings())}"

    def idempotency_namespace(self) -> str:
        return self.idempotency.namespace or f"bik-bridge:{self.store_scope()}"

    def lease_seconds(self) -> float:
        """How long an owner holds a draft: longer than the worst upstream budget."""
        return self.upstream.total_timeout_seconds + self.idempotency.lease_grace_seconds

    def place_order_worst_case_seconds(self) -> float:
        """The longest one placeOrder call can take while the idempotency store answers promptly."""
        # One budget covers the whole call, including a duplicate's wait for the draft's owner (the wait is bounded
        # by wait_seconds, which may exceed the budget). Each attempt's connect and read timeouts are capped by
        # what is left of the budget, so the last attempt can overrun it by at most one connect timeout.
        return (max(self.idempotency.wait_seconds, self.upstream.total_timeout_seconds)
                + self.upstream.connect_timeout_seconds)

    def masked(self) -> dict:
        """The resolved configuration for printing: secrets masked, a Redis URL's password only."""
        dumped = self.model_dump(mode="json")
        dumped["idempotency"]["redis_url"] = mask_url(self.idempotency.redis_url.get_secret_value())
        # The platforms' sections are shown where config.example.yaml has them: after `upstream`.
        core = [key for key in dumped if key not in self.platforms]
        after = core.index("upstream") + 1
        return {key: dumped[key] for key in [*core[:after], *self.platforms, *core[after:]]}


def config_model(platforms: Mapping[str, "Platform"], default: Optional[str] = None) -> type[Config]:
    """The Config for a registry: `platform` one of its names, and each platform's section under its name."""
    sections: dict[str, Any] = {}
    for name, platform in platforms.items():
        if name in Config.model_fields or hasattr(Config, name):
            raise ValueError(f"a platform cannot be named {name}: the core's Config has that name")
        model = platform.settings
        # A section with a setting that has no default is absent until the file gives it; any other is its defaults.
        sections[name] = (Optional[model], None) if platform.section_required() else (model, model())
    names = Literal[tuple(platforms)]  # type: ignore[valid-type]
    chosen = (names, default) if default in platforms else (names, ...)
    model = create_model("Config", __base__=Config, __module__=__name__, platform=chosen, **sections)
    model.platforms = MappingProxyType(dict(platforms))
    return model


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def expand_env(node: Any, environ: dict[str, str], path: str = "") -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a YAML tree; name every unset VAR (and every
    reference left open) at once."""
    unset: list[str] = []
    expanded = _expand(node, environ, path, unset)
    if unset:
        raise ConfigError("; ".join(unset))
    return expanded


def _expand(node: Any, environ: dict[str, str], path: str, unset: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _expand(v, environ, f"{path}.{k}" if path else str(k), unset) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, environ, f"{path}.{i}", unset) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                unset.append(f"{path}: environment variable {name} is not set")
                return ""
            return default
        return value

    if "${" in _VAR.sub("", node):
        # A reference left open would otherwise become the value itself: a token of "${BIK_BRIDGE_TOKEN".
        unset.append(f"{path}: a ${{ with no matching }} (write ${{NAME}} or ${{NAME:-default}})")
    return _VAR.sub(substitute, node)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "config"
        message = item["msg"]
        if item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif item["type"] == "missing":
            message = "field required"
        elif item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def parse_config(raw: Any, environ: dict[str, str] | None = None, base_dir: str | Path | None = None, *,
                 model: type[Config]) -> Config:
    """Validate a parsed YAML tree into `model`; the relative paths it sets are taken from `base_dir` (or cwd)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the file must hold a mapping of keys")
    expanded = expand_env(raw, dict(os.environ) if environ is None else environ)
    try:
        return model.model_validate(expanded, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def revise(config: Config, changes: dict) -> Config:
    """A copy of `config` with top-level sections merged from `changes`, validated again."""
    raw = config.model_dump(mode="python")
    for key, value in changes.items():
        raw[key] = {**(raw.get(key) or {}), **value} if isinstance(value, dict) else value
    try:
        return type(config).model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping: which of the two wins is a guess."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<:` merges may be overridden by design
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:
                continue  # an unhashable key: the base class refuses it with its own message
            if repeated:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is written twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """YAML text as Python data, like `yaml.safe_load`, but a key written twice in one mapping is an error."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what PyYAML found wrong, without the snippet it quotes: the line it shows may hold a secret."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {getattr(exc, 'problem', None) or 'it cannot be parsed'}"


def load_config(path: str | None = None, environ: dict[str, str] | None = None, *, model: type[Config]) -> Config:
    """Load `model` from `path`, else $BIK_BRIDGE_CONFIG, else its embedded defaults."""
    env = dict(os.environ) if environ is None else environ
    path = path or env.get(CONFIG_ENV) or None
    if path is None:
        return parse_config({}, env, model=model)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML{yaml_problem(exc)}") from None
    if raw is None:
        # A file that says nothing is a mistake (a secret not mounted, a template not filled), not a wish for the
        # embedded defaults: those run the local platform with no auth, which must never answer Bik by accident.
        raise ConfigError(f"{path} is empty; name at least the platform (see config.example.yaml), or "
                          "give no --config for the embedded defaults")
    return parse_config(raw, env, base_dir=file.resolve().parent, model=model)
