"""Configuration: one TOML file, then the environment, validated at start-up.

Where it comes from: ``FENXIAO_CONFIG``, else ``config.toml`` in the working
directory, else — only when asked for with ``FENXIAO_TRYOUT=1``, as ``make
run`` does — the built-in try-out defaults (SQLite, in-process Redis stand-in,
sandbox platform on), else the environment alone. Any key can be overridden
from the environment as ``FENXIAO_<SECTION>_<KEY>`` (``FENXIAO_WECHAT_SECRET``),
which is how secrets are meant to arrive in production; a deployment given
only such variables is built from them (required keys required), never
merged with the try-out's sandbox defaults. With none of these, start-up stops.

The result is an immutable, validated ``Settings`` object; a bad or missing
required key raises ``ConfigError`` naming the key, before anything starts.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """Start-up must stop: the message names the offending key."""


REQUIRED = object()


@dataclass(frozen=True)
class Key:
    default: Any
    kind: type
    check: Callable[[Any], str | None] | None = None
    secret: bool = False


def _url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http(s) URL"
    return None


def _db_url(value: str) -> str | None:
    if not value.startswith(("sqlite:", "postgresql")):
        return "must be a sqlite:// or postgresql:// SQLAlchemy URL"
    return None


def _redis_url(value: str) -> str | None:
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        return "must be empty (in-process fallback) or a redis:// URL"
    return None


def _aes_key(value: str) -> str | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value + "=", validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(value) != 43 or len(raw) != 32:
        return "must be the 43-character EncodingAESKey from the WeChat console, or empty for plaintext mode"
    return None


def _file_or_empty(value: str) -> str | None:
    if value and not Path(value).is_file():
        return f"names {value}, which is not a readable file"
    return None


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in allowed else f"must be one of {', '.join(allowed)}"


def _range(lo: int, hi: int) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}"


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


SCHEMA: dict[str, dict[str, Key]] = {
    "app": {
        "secret_key": Key(REQUIRED, str, lambda v: None if len(v) >= 16 else "must be at least 16 characters", secret=True),
        "base_url": Key(REQUIRED, str, _url),
        "database_url": Key(REQUIRED, str, _db_url, secret=True),
        "redis_url": Key("", str, _redis_url, secret=True),
        "log_level": Key("INFO", str, _one_of("DEBUG", "INFO", "WARNING", "ERROR")),
    },
    "wechat": {
        "appid": Key(REQUIRED, str, _nonempty),
        "secret": Key(REQUIRED, str, _nonempty, secret=True),
        "token": Key(REQUIRED, str, lambda v: None if 3 <= len(v) <= 32 and v.isalnum() else "must be 3-32 letters or digits", secret=True),
        "encoding_aes_key": Key("", str, _aes_key, secret=True),
        "api_base": Key("", str, lambda v: _url(v) if v else None),
        "open_base": Key("", str, lambda v: _url(v) if v else None),
        "sandbox": Key(False, bool),
        "replay_window_seconds": Key(300, int, _range(30, 86400)),
        "max_body_bytes": Key(65536, int, _range(1024, 1048576)),
    },
    "distribution": {
        "review": Key("manual", str, _one_of("auto", "manual", "threshold")),
        "level1_rate_bp": Key(1000, int, _range(0, 10000)),
        "level2_rate_bp": Key(500, int, _range(0, 10000)),
        # The most both levels together may earn of a line, per product too.
        "max_total_rate_bp": Key(3000, int, _range(0, 10000)),
        "review_threshold_fen": Key(0, int, _range(0, 10**10)),
        "reapply_cooldown_hours": Key(72, int, _range(0, 24 * 365)),
        "freeze_days": Key(7, int, _range(0, 365)),
        "withdraw_min_fen": Key(100, int, _range(1, 10**9)),
        "withdraw_fee_bp": Key(0, int, _range(0, 5000)),
        "withdraw_daily_limit_fen": Key(2_000_000, int, _range(1, 10**10)),
    },
    # Template ids from the WeChat console (模板消息); an empty id sends no
    # template message of that kind (the in-app notification still appears).
    "templates": {
        "new_member": Key("", str),
        "new_order": Key("", str),
        "commission_settled": Key("", str),
        "application_approved": Key("", str),
        "application_rejected": Key("", str),
        "withdrawal_paid": Key("", str),
        "withdrawal_rejected": Key("", str),
        "order_paid": Key("", str),
        "order_shipped": Key("", str),
        "order_refunded": Key("", str),
        "commission_clawed_back": Key("", str),
        "distributor_frozen": Key("", str),
        "distributor_unfrozen": Key("", str),
    },
    "orders": {
        "pay_timeout_minutes": Key(30, int, _range(1, 24 * 60)),
        "auto_confirm_days": Key(7, int, _range(1, 60)),
        "max_quantity": Key(99, int, _range(1, 10000)),
    },
    # A payment channel is on when its merchant id is set; then its keys are required.
    "wechatpay": {
        "mchid": Key("", str),
        "appid": Key("", str),
        "private_key_path": Key("", str, _file_or_empty),
        "cert_serial_no": Key("", str),
        "apiv3_key": Key("", str, lambda v: None if not v or len(v.encode()) == 32 else "must be 32 bytes",
                         secret=True),
        "public_key_path": Key("", str, _file_or_empty),
        "public_key_id": Key("", str),
        "api_base": Key("https://api.mch.weixin.qq.com", str, _url),
        "sandbox": Key(False, bool),
    },
    "alipay": {
        "app_id": Key("", str),
        "seller_id": Key("", str),
        "app_private_key_path": Key("", str, _file_or_empty),
        "alipay_public_key_path": Key("", str, _file_or_empty),
        "gateway": Key("https://openapi.alipay.com/gateway.do", str, _url),
        "sandbox": Key(False, bool),
    },
    # The management platform (/admin).
    "admin": {
        # Owner and finance staff must use a TOTP authenticator to log in.
        "require_2fa": Key(False, bool),
        # A withdrawal above this many fen needs a second staff member to confirm its payment; 0: never.
        "dual_approval_fen": Key(500_000, int, _range(0, 10**10)),
        "session_hours": Key(12, int, _range(1, 24 * 7)),
        "idle_minutes": Key(120, int, _range(5, 24 * 60)),
        # Where uploaded product pictures are kept; empty: var/media beside the database.
        "media_dir": Key("", str),
        # Where large CSV exports are written for download; empty: var/exports beside the database.
        "exports_dir": Key("", str),
    },
    "queue": {
        "name": Key("fenxiao", str, _nonempty),
        "max_retries": Key(5, int, _range(0, 20)),
    },
}

REAL_API_BASE = "https://api.weixin.qq.com"
REAL_OPEN_BASE = "https://open.weixin.qq.com"


class Settings(Mapping[str, Mapping[str, Any]]):
    """Read-only view of the validated configuration: ``settings['wechat']['appid']``."""

    def __init__(self, data: dict[str, dict[str, Any]], source: str) -> None:
        self._data = MappingProxyType({s: MappingProxyType(v) for s, v in data.items()})
        self.source = source

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self._data[section]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def tryout(self) -> bool:
        return self.source == "try-out defaults"

    @property
    def uses_redis_fallback(self) -> bool:
        return not self["app"]["redis_url"]


def _coerce(section: str, name: str, key: Key, value: Any, from_env: bool = False) -> Any:
    where = f"[{section}] {name}"
    if from_env and isinstance(value, str) and key.kind is not str:
        # Values from the environment are strings; a file has TOML types.
        if key.kind is bool and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if key.kind is int:
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if key.kind is int and isinstance(value, bool) or not isinstance(value, key.kind):
        raise ConfigError(f"{where}: expected {key.kind.__name__}, got {type(value).__name__}")
    return value


def build(raw: Mapping[str, Any], environ: Mapping[str, str], source: str) -> Settings:
    """Merge file values, environment overrides and defaults; validate all of it."""
    for section, values in raw.items():
        if section not in SCHEMA:
            log.warning("config: unknown section [%s] ignored", section)
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}]: must be a table")
        for name in values:
            if name not in SCHEMA[section]:
                log.warning("config: unknown key [%s] %s ignored", section, name)

    data: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {}) if isinstance(raw.get(section, {}), dict) else {}
        data[section] = {}
        for name, key in keys.items():
            env_name = f"FENXIAO_{section}_{name}".upper()
            from_env = env_name in environ
            if from_env:
                value = environ[env_name]
            elif name in given:
                value = given[name]
            elif key.default is REQUIRED:
                raise ConfigError(f"[{section}] {name} is required (in the config file or {env_name})")
            else:
                value = key.default
            value = _coerce(section, name, key, value, from_env)
            problem = key.check(value) if key.check else None
            if problem:
                raise ConfigError(f"[{section}] {name} {problem}")
            data[section][name] = value

    wechat, app = data["wechat"], data["app"]
    base = app["base_url"].rstrip("/")
    app["base_url"] = base
    # With the sandbox on and no address given, WeChat is our own sandbox platform.
    if not wechat["api_base"]:
        wechat["api_base"] = f"{base}/sandbox/api" if wechat["sandbox"] else REAL_API_BASE
    if not wechat["open_base"]:
        wechat["open_base"] = f"{base}/sandbox/open" if wechat["sandbox"] else REAL_OPEN_BASE
    wechat["api_base"] = wechat["api_base"].rstrip("/")
    wechat["open_base"] = wechat["open_base"].rstrip("/")
    _check_payment_keys(data)
    _check_rates(data["distribution"])
    for name in ("api_base", "open_base"):
        if not wechat["sandbox"] and "/sandbox/" in wechat[name] + "/":
            raise ConfigError(f"[wechat] {name} points at the sandbox platform but [wechat] sandbox is false")
    if wechat["sandbox"] and base.startswith("https://"):
        # An https address is a public deployment; the sandbox lets anyone act as
        # any user and pay without money, so it only runs on a local http address.
        raise ConfigError("[wechat] sandbox = true is refused with an https [app] base_url: the sandbox "
                          "platform is for local try-outs; set [wechat] sandbox = false for a real deployment")
    return Settings(data, source)


def _check_rates(distribution: dict[str, Any]) -> None:
    level1, level2, cap = (distribution[k] for k in ("level1_rate_bp", "level2_rate_bp", "max_total_rate_bp"))
    if level1 + level2 > cap:
        raise ConfigError(f"[distribution] level1_rate_bp + level2_rate_bp ({level1} + {level2} = {level1 + level2})"
                          f" must be at most [distribution] max_total_rate_bp ({cap})")


PAYMENT_REQUIRED = {
    "wechatpay": ("mchid", ("private_key_path", "cert_serial_no", "apiv3_key", "public_key_path", "public_key_id")),
    "alipay": ("app_id", ("app_private_key_path", "alipay_public_key_path")),
}


def _check_payment_keys(data: dict[str, dict[str, Any]]) -> None:
    for section, (switch, needed) in PAYMENT_REQUIRED.items():
        if data[section][switch]:
            for name in needed:
                if not data[section][name]:
                    raise ConfigError(f"[{section}] {name} is required when [{section}] {switch} is set")
    if not data["wechatpay"]["appid"]:
        data["wechatpay"]["appid"] = data["wechat"]["appid"]
    for section, address in (("wechatpay", "api_base"), ("alipay", "gateway")):
        if not data[section]["sandbox"] and "/sandbox/" in data[section][address]:
            raise ConfigError(f"[{section}] {address} points at the sandbox but [{section}] sandbox is false")


TRYOUT_BASE_URL = "http://127.0.0.1:5000"


def tryout_defaults(instance_dir: Path, base_url: str = TRYOUT_BASE_URL) -> dict[str, Any]:
    """Try-out mode: everything embedded. Secrets are random per installation,
    kept in the instance folder so restarts keep sessions and tokens valid.
    ``base_url`` is where it is served (``make run HOST=… PORT=…`` passes its
    own as FENXIAO_APP_BASE_URL): the sandbox platform, OAuth and payment links
    are built from it."""
    instance_dir.mkdir(parents=True, exist_ok=True)
    secrets_file = instance_dir / "tryout-secrets.json"
    if secrets_file.exists():
        made = json.loads(secrets_file.read_text())
    else:
        made = {
            "secret_key": secrets.token_urlsafe(32),
            "wechat_secret": secrets.token_hex(16),
            "token": secrets.token_hex(8),
            "encoding_aes_key": base64.b64encode(secrets.token_bytes(32)).decode()[:43],
        }
        secrets_file.write_text(json.dumps(made))
        secrets_file.chmod(0o600)
    from sandbox.paykeys import ensure, payment_config

    base_url = base_url.rstrip("/")
    return {
        **payment_config(ensure(instance_dir / "sandbox-pay-keys"), base_url),
        "app": {
            "secret_key": made["secret_key"],
            "base_url": base_url,
            "database_url": f"sqlite:///{(instance_dir / 'fenxiao.sqlite').resolve()}",
            "redis_url": "",
        },
        "wechat": {
            "appid": "wx5andb0xf3nx1a0",
            "secret": made["wechat_secret"],
            "token": made["token"],
            "encoding_aes_key": made["encoding_aes_key"],
            "sandbox": True,
        },
        # Applications wait for the merchant, who reviews them in /admin (the demo owner).
        "distribution": {"review": "manual"},
        "templates": {kind: f"TM_{kind}" for kind in SCHEMA["templates"]},  # kept by the sandbox platform
    }


NO_CONFIGURATION = (
    "no configuration: set FENXIAO_CONFIG to a TOML file, create config.toml in the working directory "
    "(see config.example.toml), or set FENXIAO_TRYOUT=1 for the built-in try-out "
    "(SQLite, sandbox WeChat, random secrets — what `make run` does)"
)


def tryout_requested(environ: Mapping[str, str]) -> bool:
    """``FENXIAO_TRYOUT=1`` (or true/yes): the explicit choice of the try-out defaults."""
    value = environ.get("FENXIAO_TRYOUT", "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ConfigError(f"FENXIAO_TRYOUT must be 1 (the try-out) or 0, got {value!r}")


def environment_keys(environ: Mapping[str, str]) -> list[str]:
    """The ``FENXIAO_<SECTION>_<KEY>`` variables that name a key of ours."""
    known = {f"FENXIAO_{section}_{name}".upper() for section, keys in SCHEMA.items() for name in keys}
    return sorted(name for name in environ if name in known)


def load(environ: Mapping[str, str] | None = None, instance_dir: Path | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    default_instance = Path(__file__).resolve().parent.parent / "var"
    instance_dir = instance_dir or Path(environ.get("FENXIAO_INSTANCE", default_instance))
    tryout = tryout_requested(environ)
    path = environ.get("FENXIAO_CONFIG")
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"FENXIAO_CONFIG points at {path}, which is not a file")
    elif Path("config.toml").is_file():
        path = "config.toml"
    if path and tryout:
        raise ConfigError(f"FENXIAO_TRYOUT=1 asks for the try-out defaults, but {path} configures this "
                          "deployment: unset FENXIAO_TRYOUT or remove the file")
    if not path:
        if tryout:
            base_url = environ.get("FENXIAO_APP_BASE_URL") or TRYOUT_BASE_URL
            return build(tryout_defaults(instance_dir, base_url), environ, "try-out defaults")
        if not environment_keys(environ):
            raise ConfigError(NO_CONFIGURATION)
        # Configured by FENXIAO_* variables alone: nothing is filled in from the try-out.
        return build({}, environ, "environment")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return build(raw, environ, path)
