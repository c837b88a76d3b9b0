"""Configuration: where it comes from, what the environment may change, and
how a mistake stops start-up with a message naming the key."""
from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.config import SCHEMA, ConfigError, build, load
from conftest import make_raw_config

# Secrets a committed example must never fill in.
SECRETS = [("app", "secret_key"), ("wechat", "secret"), ("wechat", "token"), ("wechat", "encoding_aes_key")]


def good_raw(**overrides) -> dict:
    return make_raw_config("https://shop.example.com", "sqlite:///fenxiao.sqlite", **overrides)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_toml(path: Path, raw: dict) -> Path:
    lines = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def without(raw: dict, section: str, key: str) -> dict:
    del raw[section][key]
    return raw


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory with no config.toml in it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# --- where the configuration comes from ---------------------------------

def test_fenxiao_config_wins_over_config_toml_in_cwd(elsewhere, tmp_path):
    write_toml(elsewhere / "config.toml", good_raw(wechat={"appid": "wxfromcwd"}))
    chosen = write_toml(tmp_path / "chosen.toml", good_raw(wechat={"appid": "wxfromenv"}))
    settings = load({"FENXIAO_CONFIG": str(chosen)}, instance_dir=tmp_path / "instance")
    assert settings["wechat"]["appid"] == "wxfromenv"
    assert settings.source == str(chosen)
    assert not settings.tryout


def test_config_toml_in_working_directory_is_used(elsewhere, tmp_path):
    write_toml(elsewhere / "config.toml", good_raw(wechat={"appid": "wxfromcwd"}))
    settings = load({}, instance_dir=tmp_path / "instance")
    assert settings["wechat"]["appid"] == "wxfromcwd"
    assert not settings.tryout


def test_no_file_means_tryout_defaults(elsewhere, tmp_path):
    instance = tmp_path / "instance"
    settings = load({}, instance_dir=instance)
    assert settings.tryout
    assert settings["app"]["database_url"].startswith("sqlite:///")
    assert str(instance.resolve()) in settings["app"]["database_url"]
    assert settings["app"]["redis_url"] == ""
    assert settings.uses_redis_fallback
    assert settings["wechat"]["sandbox"] is True
    base = settings["app"]["base_url"]
    assert settings["wechat"]["api_base"] == f"{base}/sandbox/api"
    assert settings["wechat"]["open_base"] == f"{base}/sandbox/open"


def test_tryout_secrets_are_random_per_installation_and_kept(elsewhere, tmp_path):
    first = load({}, instance_dir=tmp_path / "one")
    again = load({}, instance_dir=tmp_path / "one")
    other = load({}, instance_dir=tmp_path / "two")
    for section, key in SECRETS:
        assert first[section][key], f"[{section}] {key} empty in try-out mode"
        assert again[section][key] == first[section][key], f"[{section}] {key} changed across restarts"
        assert other[section][key] != first[section][key], f"[{section}] {key} is not random"
    kept = next((tmp_path / "one").glob("*secret*"))
    assert stat.S_IMODE(kept.stat().st_mode) & 0o077 == 0, "secrets file readable by others"


def test_fenxiao_config_pointing_at_missing_file_is_refused(elsewhere, tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        load({"FENXIAO_CONFIG": str(missing)}, instance_dir=tmp_path / "instance")


def test_invalid_toml_is_refused(elsewhere, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('[app]\nbase_url = "https://x.example.com\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="TOML"):
        load({"FENXIAO_CONFIG": str(broken)}, instance_dir=tmp_path / "instance")


# --- the environment -------------------------------------------------------

def test_environment_overrides_file_values(tmp_path):
    path = write_toml(tmp_path / "c.toml", good_raw(wechat={"secret": "fromfile"}))
    settings = load({
        "FENXIAO_CONFIG": str(path),
        "FENXIAO_WECHAT_SECRET": "fromenvironment",
        "FENXIAO_APP_BASE_URL": "https://other.example.com/",
    }, instance_dir=tmp_path / "instance")
    assert settings["wechat"]["secret"] == "fromenvironment"
    assert settings["app"]["base_url"] == "https://other.example.com"


def test_required_secret_can_come_only_from_the_environment():
    raw = without(good_raw(), "wechat", "secret")
    settings = build(raw, {"FENXIAO_WECHAT_SECRET": "s3cret"}, "test")
    assert settings["wechat"]["secret"] == "s3cret"


@pytest.mark.parametrize("text, expected", [("false", False), ("0", False), ("no", False),
                                            ("true", True), ("1", True), ("YES", True)])
def test_environment_booleans_are_coerced(text, expected):
    settings = build(good_raw(wechat={"api_base": "https://wx.example.com"}),
                     {"FENXIAO_WECHAT_SANDBOX": text}, "test")
    assert settings["wechat"]["sandbox"] is expected


def test_environment_integers_are_coerced():
    settings = build(good_raw(), {"FENXIAO_QUEUE_MAX_RETRIES": "7",
                                  "FENXIAO_DISTRIBUTION_LEVEL1_RATE_BP": "1500"}, "test")
    assert settings["queue"]["max_retries"] == 7
    assert settings["distribution"]["level1_rate_bp"] == 1500


@pytest.mark.parametrize("env, key", [
    ({"FENXIAO_QUEUE_MAX_RETRIES": "many"}, "[queue] max_retries"),
    ({"FENXIAO_WECHAT_SANDBOX": "maybe"}, "[wechat] sandbox"),
    ({"FENXIAO_DISTRIBUTION_LEVEL2_RATE_BP": "20000"}, "[distribution] level2_rate_bp"),
])
def test_bad_environment_values_name_the_key(env, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        build(good_raw(), env, "test")


# --- validation --------------------------------------------------------------

@pytest.mark.parametrize("section, key", [
    ("app", "secret_key"), ("app", "base_url"), ("app", "database_url"),
    ("wechat", "appid"), ("wechat", "secret"), ("wechat", "token"),
])
def test_missing_required_key_is_named(section, key):
    with pytest.raises(ConfigError, match=re.escape(f"[{section}] {key}")):
        build(without(good_raw(), section, key), {}, "test")


GOOD_AES = base64.b64encode(secrets.token_bytes(32)).decode()[:43]


@pytest.mark.parametrize("section, key, value", [
    ("app", "base_url", "shop.example.com"),
    ("app", "base_url", "ftp://shop.example.com"),
    ("app", "database_url", "mysql://root@localhost/fenxiao"),
    ("app", "redis_url", "http://127.0.0.1:6379/0"),
    ("app", "secret_key", "short"),
    ("app", "log_level", "LOUD"),
    ("wechat", "appid", "  "),
    ("wechat", "secret", ""),
    ("wechat", "encoding_aes_key", GOOD_AES[:42]),
    ("wechat", "encoding_aes_key", GOOD_AES + "A"),
    ("wechat", "encoding_aes_key", "!" * 43),
    ("wechat", "token", "my token!"),
    ("wechat", "token", "ab"),
    ("wechat", "token", "x" * 33),
    ("wechat", "api_base", "api.weixin.qq.com"),
    ("wechat", "open_base", "not a url"),
    ("wechat", "replay_window_seconds", 5),
    ("distribution", "review", "sometimes"),
    ("distribution", "level1_rate_bp", 10001),
    ("distribution", "level1_rate_bp", -1),
    ("distribution", "level2_rate_bp", 12.5),
    ("queue", "max_retries", "5"),
    ("queue", "max_retries", True),
    ("queue", "max_retries", 21),
    ("wechat", "sandbox", "maybe"),
    ("app", "secret_key", 1234567890123456789),
])
def test_bad_values_name_the_key(section, key, value):
    with pytest.raises(ConfigError, match=re.escape(f"[{section}] {key}")):
        build(good_raw(**{section: {key: value}}), {}, "test")


def test_good_values_are_accepted():
    settings = build(good_raw(
        app={"base_url": "https://shop.example.com/", "redis_url": "redis://127.0.0.1:6379/0",
             "database_url": "postgresql+psycopg://fenxiao@db/fenxiao"},
        wechat={"encoding_aes_key": GOOD_AES, "token": "Abc123", "sandbox": False},
        distribution={"review": "threshold", "level1_rate_bp": 0, "level2_rate_bp": 10000},
        queue={"max_retries": 0},
    ), {}, "test")
    assert settings["app"]["base_url"] == "https://shop.example.com"
    assert settings["wechat"]["api_base"] == "https://api.weixin.qq.com"
    assert settings["wechat"]["open_base"] == "https://open.weixin.qq.com"
    assert settings["distribution"]["review"] == "threshold"
    assert not settings.uses_redis_fallback


def test_empty_aes_key_means_plaintext_mode():
    assert build(good_raw(wechat={"encoding_aes_key": ""}), {}, "test")["wechat"]["encoding_aes_key"] == ""


def test_section_that_is_not_a_table_is_refused():
    raw = good_raw()
    raw["distribution"] = "auto"
    with pytest.raises(ConfigError, match=re.escape("[distribution]")):
        build(raw, {}, "test")


def test_sandbox_off_with_api_base_at_the_sandbox_is_refused():
    raw = good_raw(wechat={"sandbox": False, "api_base": "https://shop.example.com/sandbox/api"})
    with pytest.raises(ConfigError, match=re.escape("[wechat] sandbox")):
        build(raw, {}, "test")


def test_sandbox_off_in_the_environment_contradicting_the_file_is_refused():
    # The file leaves api_base to the sandbox default; the environment turns the sandbox off:
    # WeChat is then the real one, never the sandbox.
    settings = build(good_raw(), {"FENXIAO_WECHAT_SANDBOX": "false"}, "test")
    assert settings["wechat"]["api_base"] == "https://api.weixin.qq.com"


def test_unknown_keys_are_warned_about_not_fatal(caplog):
    raw = good_raw(wechat={"apiid": "wxtypo"}, wechatt={"appid": "x"})
    with caplog.at_level(logging.WARNING, logger="app.config"):
        settings = build(raw, {}, "test")
    assert settings["wechat"]["appid"]
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "apiid" in warned
    assert "wechatt" in warned


def test_settings_are_read_only():
    settings = build(good_raw(), {}, "test")
    with pytest.raises(TypeError):
        settings["wechat"]["appid"] = "wxother"  # type: ignore[index]


def test_error_messages_never_show_a_secret():
    raw = good_raw(app={"secret_key": "tooshort"})
    with pytest.raises(ConfigError) as caught:
        build(raw, {}, "test")
    assert "tooshort" not in str(caught.value)


# --- the committed example ---------------------------------------------------

def example_keys(text: str) -> set[tuple[str, str]]:
    """Keys the example documents, set or commented out (``# key = …``)."""
    found, section = set(), None
    for line in text.splitlines():
        header = re.match(r"^\s*#?\s*\[([A-Za-z0-9_]+)\]\s*(#.*)?$", line)
        if header:
            section = header.group(1)
            continue
        item = re.match(r"^\s*#?\s*([A-Za-z0-9_]+)\s*=", line)
        if item and section:
            found.add((section, item.group(1)))
    return found


@pytest.fixture
def example(repo_root) -> Path:
    path = repo_root / "config.example.toml"
    assert path.is_file(), "config.example.toml is missing at the repository root"
    return path


def test_example_documents_every_key(example):
    documented = example_keys(example.read_text(encoding="utf-8"))
    missing = [f"[{s}] {k}" for s, keys in SCHEMA.items() for k in keys if (s, k) not in documented]
    assert not missing, f"config.example.toml does not document: {', '.join(missing)}"


def test_example_holds_no_secret(example):
    raw = tomllib.loads(example.read_text(encoding="utf-8"))
    filled = [f"[{s}] {k}" for s, k in SECRETS if raw.get(s, {}).get(k)]
    assert not filled, f"config.example.toml ships a value for {', '.join(filled)}"


SAMPLE_SECRETS = {
    "FENXIAO_APP_SECRET_KEY": secrets.token_urlsafe(32),
    "FENXIAO_APP_BASE_URL": "https://shop.example.com",
    "FENXIAO_APP_DATABASE_URL": "postgresql+psycopg://fenxiao@127.0.0.1/fenxiao",
    "FENXIAO_WECHAT_APPID": "wx0123456789abcdef",
    "FENXIAO_WECHAT_SECRET": secrets.token_hex(16),
    "FENXIAO_WECHAT_TOKEN": "fenxiaotoken",
    "FENXIAO_WECHAT_ENCODING_AES_KEY": GOOD_AES,
}


def test_example_validates_with_blank_secrets_from_the_environment(example, tmp_path, caplog):
    raw = tomllib.loads(example.read_text(encoding="utf-8"))
    environ = {"FENXIAO_CONFIG": str(example)}
    for name, value in SAMPLE_SECRETS.items():
        section, key = name.removeprefix("FENXIAO_").lower().split("_", 1)
        if not raw.get(section, {}).get(key):  # left blank or out: the operator supplies it
            environ[name] = value
    with caplog.at_level(logging.WARNING, logger="app.config"):
        settings = load(environ, instance_dir=tmp_path / "instance")
    assert settings.source == str(example)
    unknown = [r.getMessage() for r in caplog.records if "unknown" in r.getMessage()]
    assert not unknown, f"config.example.toml teaches keys the loader ignores: {unknown}"


# --- start-up through the CLI ------------------------------------------------

@pytest.mark.slow
def test_cli_startup_with_bad_config_names_the_key(tmp_path, repo_root):
    bad = write_toml(tmp_path / "bad.toml", good_raw(distribution={"review": "sometimes"}))
    env = {**os.environ, "FENXIAO_CONFIG": str(bad)}
    env = {k: v for k, v in env.items() if not (k.startswith("FENXIAO_") and k != "FENXIAO_CONFIG")}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "routes"], cwd=repo_root,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "[distribution] review" in done.stdout + done.stderr
    assert "/healthz" not in done.stdout


@pytest.mark.slow
def test_cli_startup_with_missing_key_names_the_key(tmp_path, repo_root):
    bad = write_toml(tmp_path / "bad.toml", without(good_raw(), "wechat", "appid"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env["FENXIAO_CONFIG"] = str(bad)
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "routes"], cwd=repo_root,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "[wechat] appid" in done.stdout + done.stderr
