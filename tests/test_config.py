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
    """A valid configuration with the sandbox on, so on a local http address."""
    return make_raw_config("http://shop.example.com", "sqlite:///fenxiao.sqlite", **overrides)


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


TRYOUT = {"FENXIAO_TRYOUT": "1"}


def test_no_file_and_no_tryout_choice_stops_saying_what_to_do(elsewhere, tmp_path):
    instance = tmp_path / "instance"
    with pytest.raises(ConfigError) as caught:
        load({}, instance_dir=instance)
    for hint in ("FENXIAO_CONFIG", "config.toml", "FENXIAO_TRYOUT=1"):
        assert hint in str(caught.value)
    assert not instance.exists(), "no try-out secrets or database made without being asked"


@pytest.mark.parametrize("value", ["0", "false", "", "no"])
def test_tryout_switched_off_is_no_tryout(elsewhere, tmp_path, value):
    with pytest.raises(ConfigError, match="FENXIAO_TRYOUT=1"):
        load({"FENXIAO_TRYOUT": value}, instance_dir=tmp_path / "instance")


def test_tryout_flag_with_another_value_is_refused(elsewhere, tmp_path):
    with pytest.raises(ConfigError, match="FENXIAO_TRYOUT"):
        load({"FENXIAO_TRYOUT": "please"}, instance_dir=tmp_path / "instance")


def test_tryout_flag_beside_a_config_file_is_refused(elsewhere, tmp_path):
    write_toml(elsewhere / "config.toml", good_raw())
    with pytest.raises(ConfigError, match="FENXIAO_TRYOUT"):
        load(TRYOUT, instance_dir=tmp_path / "instance")


def test_no_file_means_tryout_defaults_when_asked(elsewhere, tmp_path):
    instance = tmp_path / "instance"
    settings = load(TRYOUT, instance_dir=instance)
    assert settings.tryout
    assert settings["app"]["database_url"].startswith("sqlite:///")
    assert str(instance.resolve()) in settings["app"]["database_url"]
    assert settings["app"]["redis_url"] == ""
    assert settings.uses_redis_fallback
    assert settings["wechat"]["sandbox"] is True
    base = settings["app"]["base_url"]
    assert settings["wechat"]["api_base"] == f"{base}/sandbox/api"
    assert settings["wechat"]["open_base"] == f"{base}/sandbox/open"


def test_tryout_builds_its_links_from_its_own_address(elsewhere, tmp_path):
    # make run HOST=192.168.1.5 PORT=5077 passes FENXIAO_APP_BASE_URL=http://192.168.1.5:5077
    base = "http://192.168.1.5:5077"
    settings = load({**TRYOUT, "FENXIAO_APP_BASE_URL": base + "/"}, instance_dir=tmp_path / "instance")
    assert settings.tryout and settings["app"]["base_url"] == base
    assert settings["wechat"]["api_base"] == f"{base}/sandbox/api"
    assert settings["wechat"]["open_base"] == f"{base}/sandbox/open"
    assert settings["wechatpay"]["api_base"] == f"{base}/sandbox/pay/wechatpay"
    assert settings["alipay"]["gateway"] == f"{base}/sandbox/pay/alipay/gateway.do"


def test_tryout_on_an_https_address_is_refused(elsewhere, tmp_path):
    with pytest.raises(ConfigError, match=re.escape("[wechat] sandbox")):
        load({**TRYOUT, "FENXIAO_APP_BASE_URL": "https://shop.example.com"}, instance_dir=tmp_path / "instance")


def test_tryout_secrets_are_random_per_installation_and_kept(elsewhere, tmp_path):
    first = load(TRYOUT, instance_dir=tmp_path / "one")
    again = load(TRYOUT, instance_dir=tmp_path / "one")
    other = load(TRYOUT, instance_dir=tmp_path / "two")
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
    path = write_toml(tmp_path / "c.toml", good_raw(wechat={"secret": "fromfile", "sandbox": False}))
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


GOOD_AES = base64.b64encode(bytes(range(32))).decode()[:43]  # fixed: test ids must match across xdist workers


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
        distribution={"review": "threshold", "level1_rate_bp": 0, "level2_rate_bp": 10000,
                      "max_total_rate_bp": 10000},
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


@pytest.mark.parametrize("where", ["file", "environment"])
def test_sandbox_with_an_https_base_url_is_refused(where):
    if where == "file":
        raw, env = good_raw(app={"base_url": "https://shop.example.com"}), {}
    else:
        raw, env = good_raw(), {"FENXIAO_APP_BASE_URL": "https://shop.example.com"}
    with pytest.raises(ConfigError, match=re.escape("[wechat] sandbox")):
        build(raw, env, "test")


def test_https_base_url_without_the_sandbox_is_fine():
    settings = build(good_raw(app={"base_url": "https://shop.example.com"}, wechat={"sandbox": False}), {}, "test")
    assert settings["app"]["base_url"] == "https://shop.example.com"


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


# --- configured by the environment alone -------------------------------------

def test_environment_alone_is_a_real_deployment_not_the_sandbox(elsewhere, tmp_path):
    instance = tmp_path / "instance"
    settings = load(SAMPLE_SECRETS, instance_dir=instance)
    assert settings.source == "environment" and not settings.tryout
    assert settings["app"]["base_url"] == SAMPLE_SECRETS["FENXIAO_APP_BASE_URL"]
    assert settings["app"]["database_url"] == SAMPLE_SECRETS["FENXIAO_APP_DATABASE_URL"]
    assert settings["wechat"]["secret"] == SAMPLE_SECRETS["FENXIAO_WECHAT_SECRET"]
    assert settings["wechat"]["sandbox"] is False
    assert settings["wechat"]["api_base"] == "https://api.weixin.qq.com"
    assert settings["wechat"]["open_base"] == "https://open.weixin.qq.com"
    # Nothing taken from the try-out: no sandbox payments, no auto-approval, no made-up template ids.
    assert settings["wechatpay"]["mchid"] == "" and settings["wechatpay"]["sandbox"] is False
    assert settings["alipay"]["app_id"] == "" and settings["alipay"]["sandbox"] is False
    assert settings["distribution"]["review"] == "manual"
    assert not any(settings["templates"].values())
    assert not instance.exists(), "no try-out secrets written"


@pytest.mark.parametrize("name", sorted(set(SAMPLE_SECRETS) - {"FENXIAO_WECHAT_ENCODING_AES_KEY"}))
def test_environment_alone_needs_every_required_key(elsewhere, tmp_path, name):
    environ = {k: v for k, v in SAMPLE_SECRETS.items() if k != name}
    section, key = name.removeprefix("FENXIAO_").lower().split("_", 1)
    with pytest.raises(ConfigError, match=re.escape(f"[{section}] {key} is required")):
        load(environ, instance_dir=tmp_path / "instance")


def test_environment_alone_cannot_turn_on_the_sandbox_on_https(elsewhere, tmp_path):
    with pytest.raises(ConfigError, match=re.escape("[wechat] sandbox")):
        load({**SAMPLE_SECRETS, "FENXIAO_WECHAT_SANDBOX": "true"}, instance_dir=tmp_path / "instance")


# --- the AppSecret never reaches a log ------------------------------------------

def test_app_secret_is_in_no_log_record_at_debug_after_a_token_fetch(app, settings, caplog):
    """wechatpy sends the AppSecret in the token request's query; urllib3 logs
    URLs at DEBUG and the server logs request lines."""
    from wxbot.client import wechat_client

    secret = settings["wechat"]["secret"]
    with caplog.at_level(logging.DEBUG):
        token = wechat_client().access_token
    assert token
    logged = "\n".join([r.getMessage() for r in caplog.records] + [caplog.text])
    assert "cgi-bin/token" in logged, "the token request was logged (else this test proves nothing)"
    assert "secret=***" in logged
    assert secret not in logged


def test_app_secret_is_masked_in_a_logged_traceback(app, settings, caplog):
    import requests

    secret = settings["wechat"]["secret"]
    log = logging.getLogger("wxbot.jobs")
    with caplog.at_level(logging.DEBUG):
        try:  # a closed port: the error's message carries the whole URL
            requests.get("http://127.0.0.1:9/cgi-bin/token", params={"appid": "wx1", "secret": secret}, timeout=2)
        except requests.RequestException:
            log.exception("job failed")
    assert "job failed" in caplog.text and "Traceback" in caplog.text
    assert secret not in caplog.text


def test_no_secret_value_of_the_settings_is_logged_by_start_up(tmp_path, caplog):
    from app import create_app

    raw = good_raw(app={"database_url": f"sqlite:///{tmp_path / 'x.sqlite'}", "log_level": "DEBUG"})
    with caplog.at_level(logging.DEBUG):
        built = build(raw, {}, "test")
        create_app(built)
    for section, key in SECRETS:
        value = built[section][key]
        assert value not in caplog.text, f"[{section}] {key} logged"


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
def test_cli_startup_without_any_configuration_stops_with_a_clear_message(tmp_path, repo_root):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env["PYTHONPATH"] = str(repo_root)  # run from a directory with no config.toml in it
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "routes"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "FENXIAO_TRYOUT=1" in out and "FENXIAO_CONFIG" in out
    assert "Traceback" not in out
    assert "/sandbox" not in done.stdout


@pytest.mark.slow
def test_cli_startup_with_missing_key_names_the_key(tmp_path, repo_root):
    bad = write_toml(tmp_path / "bad.toml", without(good_raw(), "wechat", "appid"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env["FENXIAO_CONFIG"] = str(bad)
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "routes"], cwd=repo_root,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "[wechat] appid" in done.stdout + done.stderr
