"""Settings: defaults, env and TOML sources, and one precise line per invalid value."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from config.secrets import jwt_secret
from config.settings import ConfigError, Settings, as_dict, load_settings
from tests.helpers import cli_env, run_cli


def test_defaults() -> None:
    s = load_settings({})
    assert (s.http_host, s.http_port, s.rtmp_host, s.rtmp_port) == (
        "0.0.0.0",
        8080,
        "0.0.0.0",
        1935,
    )
    assert s.data_dir == Path("./var")
    assert s.database_url is None and s.uses_embedded_database
    assert s.database_replica_url is None
    assert (s.log_level, s.log_format) == ("info", "text")


def test_environment_values_are_parsed() -> None:
    s = load_settings(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/streamd",
            "DATABASE_REPLICA_URL": "postgres://u:p@replica/streamd",
            "STREAMD_HTTP_PORT": "9000",
            "STREAMD_RTMP_HOST": "127.0.0.1",
            "STREAMD_DATA_DIR": "/srv/streamd",
            "STREAMD_PUBLIC_URL": "https://live.example.com/",
            "STREAMD_LOG_LEVEL": "DEBUG",
            "STREAMD_LOG_FORMAT": "json",
            "STREAMD_DB_POOL_MAX": "20",
        }
    )
    assert s.http_port == 9000 and s.rtmp_host == "127.0.0.1"
    assert s.data_dir == Path("/srv/streamd")
    assert s.public_url == "https://live.example.com"
    assert s.http_base_url() == "https://live.example.com"
    assert s.rtmp_base_url() == "rtmp://live.example.com:1935"
    assert (s.log_level, s.log_format, s.db_pool_max) == ("debug", "json", 20)
    assert not s.uses_embedded_database
    assert as_dict(s)["database_url"] == "postgresql://u:***@db:5432/streamd"


INVALID = [
    ("STREAMD_HLS_LADDER", "720p", "rungs like 720p:1280x720@30:3000k"),
    ("STREAMD_HLS_LADDER", "720p:1281x720@30:3000k", "even widths and heights"),
    ("STREAMD_HLS_RECORDING", "maybe", "true or false"),
    ("STREAMD_HLS_SEGMENT_FORMAT", "mp4", "cmaf, ts"),
    ("STREAMD_HLS_TARGET_DURATION", "0.1", "a number from 0.5 to 30"),
    ("STREAMD_HLS_X264_PRESET", "placebo", "veryfast"),
    ("DATABASE_URL", "mysql://root@localhost/x", "postgresql://"),
    ("DATABASE_REPLICA_URL", "not a url", "postgresql://"),
    ("STREAMD_HTTP_PORT", "abc", "integer from 1 to 65535"),
    ("STREAMD_HTTP_PORT", "70000", "integer from 1 to 65535"),
    ("STREAMD_RTMP_PORT", "0", "integer from 1 to 65535"),
    ("STREAMD_HTTP_HOST", "bad host", "host name or IP address"),
    ("STREAMD_RTMP_HOST", "", "host name or IP address"),
    ("STREAMD_DATA_DIR", " ", "directory path"),
    ("STREAMD_PUBLIC_URL", "live.example.com", "http:// or https://"),
    ("STREAMD_JWT_SECRET", "short", "at least 32 characters"),
    ("STREAMD_LOG_LEVEL", "verbose", "debug, info, warning, error"),
    ("STREAMD_LOG_FORMAT", "xml", "text, json"),
    ("STREAMD_DB_POOL_MIN", "-1", "integer from 0 to 1000"),
    ("STREAMD_DB_POOL_MAX", "0", "integer from 1 to 1000"),
    ("STREAMD_CACHE_CLEANUP_INTERVAL", "nan", "greater than 0"),
    ("STREAMD_JWT_ALGORITHM", "HS512", "HS256, RS256, EdDSA"),
    ("STREAMD_JWT_ALGORITHM", "none", "HS256, RS256, EdDSA"),
    ("STREAMD_JWT_PRIVATE_KEY", "/nope.pem", "readable file"),
    ("STREAMD_JWT_KEY_ID", "a b", "letters, digits"),
    ("STREAMD_JWT_PREVIOUS_KEYS", "no-kid-here", "KID=PUBLIC_KEY_FILE"),
    ("STREAMD_ACCESS_TOKEN_TTL", "0", "greater than 0"),
    ("STREAMD_REFRESH_TOKEN_TTL", "soon", "greater than 0"),
    ("STREAMD_LOGIN_MAX_FAILURES", "0", "integer from 1 to 10000"),
    ("STREAMD_LOGIN_MAX_FAILURES_PER_IP", "-5", "integer from 1 to 1000000"),
    ("STREAMD_LOGIN_WINDOW", "inf", "greater than 0"),
    ("STREAMD_REGISTER_MAX_PER_IP", "0", "integer from 1 to 1000000"),
    ("STREAMD_REGISTER_MAX_PER_EMAIL", "many", "integer from 1 to 10000"),
    ("STREAMD_REGISTER_WINDOW", "-1", "greater than 0"),
    ("STREAMD_REFRESH_REUSE_GRACE", "61", "a number from 0 to 60"),
    ("STREAMD_SMTP_HOST", "mail host", "host name"),
    ("STREAMD_SMTP_PORT", "0", "integer from 1 to 65535"),
    ("STREAMD_SMTP_SECURITY", "ssl", "starttls, tls, none"),
    ("STREAMD_SMTP_FROM", "nobody", "an email address"),
    ("STREAMD_CORS_ORIGINS", "app.example.com", "origins such as"),
    ("STREAMD_CORS_ORIGINS", "*,https://a.example.com", "origins such as"),
    ("STREAMD_API_CACHE_TTL", "-1", "greater than 0"),
    ("STREAMD_TRUSTED_PROXIES", "proxy.example.com", "IP addresses or networks"),
    ("STREAMD_TRUSTED_PROXIES", "*,10.0.0.1", "IP addresses or networks"),
    ("STREAMD_CHAT_VIEWERS_PER_ADDRESS", "0", "integer from 1 to 100000"),
]


@pytest.mark.parametrize(("var", "value", "allowed"), INVALID)
def test_invalid_value_names_variable_value_and_what_is_allowed(
    var: str, value: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({var: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{var}={value!r} is invalid: expected ")
    assert allowed in message


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="STREAMD_DB_POOL_MIN=5 is invalid: expected at most"):
        load_settings({"STREAMD_DB_POOL_MIN": "5", "STREAMD_DB_POOL_MAX": "2"})
    with pytest.raises(ConfigError, match="STREAMD_RTMP_PORT=8080 is invalid"):
        load_settings({"STREAMD_RTMP_PORT": "8080"})
    with pytest.raises(ConfigError, match="STREAMD_RTMPS_PORT=1936 is invalid: expected it"):
        load_settings({"STREAMD_RTMPS_PORT": "1936"})
    with pytest.raises(ConfigError, match=r"STREAMD_RTMPS_CERT='/nope\.pem' is invalid"):
        load_settings({"STREAMD_RTMPS_CERT": "/nope.pem"})
    with pytest.raises(ConfigError, match="STREAMD_RTMP_APP='a/b' is invalid"):
        load_settings({"STREAMD_RTMP_APP": "a/b"})


def test_empty_database_url_means_embedded() -> None:
    assert load_settings({"DATABASE_URL": ""}).uses_embedded_database


def test_toml_file_and_environment_precedence(tmp_path: Path) -> None:
    path = tmp_path / "streamd.toml"
    path.write_text('http_port = 9100\nlog_format = "json"\ndata_dir = "/data"\n')
    s = load_settings({"STREAMD_HTTP_PORT": "9200"}, config_file=path)
    assert s.http_port == 9200  # environment wins
    assert s.log_format == "json" and s.data_dir == Path("/data")


def test_toml_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "streamd.toml"
    path.write_text("http_port = 99999\n")
    with pytest.raises(ConfigError, match=r"streamd.toml: http_port='99999' is invalid"):
        load_settings({}, config_file=path)
    path.write_text("htp_port = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'htp_port'"):
        load_settings({}, config_file=path)
    path.write_text("http_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, config_file=path)
    with pytest.raises(ConfigError, match="file not found"):
        load_settings({}, config_file=tmp_path / "missing.toml")


def test_jwt_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    first = jwt_secret(settings)
    assert len(first) >= 32
    assert jwt_secret(settings) == first
    path = tmp_path / "var" / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = Settings(data_dir=tmp_path / "other")
    assert jwt_secret(other) != first  # random, not a built-in default
    assert jwt_secret(Settings(data_dir=tmp_path, jwt_secret="x" * 40)) == "x" * 40


@pytest.mark.parametrize(("var", "value", "allowed"), INVALID[::3])
def test_cli_prints_one_line_and_exits_non_zero(
    tmp_path: Path, var: str, value: str, allowed: str
) -> None:
    result = run_cli("check", env=cli_env(tmp_path, **{var: value}))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert var in lines[0] and repr(value) in lines[0] and allowed in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "pg").exists()  # stopped before touching anything


def test_api_settings(tmp_path: Path) -> None:
    defaults = load_settings({})
    assert (defaults.jwt_algorithm, defaults.access_token_ttl) == ("HS256", 900.0)
    assert defaults.refresh_token_ttl == 30 * 86400
    assert (defaults.login_max_failures, defaults.login_max_failures_per_ip) == (5, 50)
    assert defaults.smtp_host is None and defaults.cors_origins == ()
    assert defaults.mail_from() == "streamd <noreply@localhost>"

    key, old = tmp_path / "key.pem", tmp_path / "old.pub"
    key.write_text("x")
    old.write_text("x")
    s = load_settings({
        "STREAMD_JWT_ALGORITHM": "EdDSA", "STREAMD_JWT_PRIVATE_KEY": str(key),
        "STREAMD_JWT_KEY_ID": "2026-01", "STREAMD_JWT_PREVIOUS_KEYS": f"2025-06={old}, ",
        "STREAMD_CORS_ORIGINS": "https://app.example.com/, http://localhost:3000",
        "STREAMD_SMTP_HOST": "smtp.example.com", "STREAMD_SMTP_USERNAME": "u",
        "STREAMD_SMTP_PASSWORD": "hunter2hunter2", "STREAMD_PUBLIC_URL": "https://tv.example.org",
    })  # fmt: skip
    assert s.jwt_previous_keys == (("2025-06", old),)
    assert s.cors_origins == ("https://app.example.com", "http://localhost:3000")
    assert s.mail_from() == "streamd <noreply@tv.example.org>"
    assert as_dict(s)["smtp_password"] == "***"

    path = tmp_path / "streamd.toml"
    path.write_text('cors_origins = ["https://a.example.com", "https://b.example.com"]\n')
    assert load_settings({}, config_file=path).cors_origins == (
        "https://a.example.com",
        "https://b.example.com",
    )


def test_api_cross_field_rules(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("x")
    with pytest.raises(ConfigError, match="STREAMD_JWT_ALGORITHM=RS256 is invalid: expected "
                       "STREAMD_JWT_PRIVATE_KEY"):  # fmt: skip
        load_settings({"STREAMD_JWT_ALGORITHM": "RS256"})
    with pytest.raises(ConfigError, match="STREAMD_JWT_ALGORITHM=HS256 is invalid"):
        load_settings({"STREAMD_JWT_PRIVATE_KEY": str(key)})
    with pytest.raises(ConfigError, match="kid '1' is the current STREAMD_JWT_KEY_ID"):
        load_settings(
            {
                "STREAMD_JWT_ALGORITHM": "RS256",
                "STREAMD_JWT_PRIVATE_KEY": str(key),
                "STREAMD_JWT_KEY_ID": "1",
                "STREAMD_JWT_PREVIOUS_KEYS": f"1={key}",
            }
        )
    with pytest.raises(ConfigError, match="STREAMD_SMTP_USERNAME is invalid"):
        load_settings({"STREAMD_SMTP_HOST": "h", "STREAMD_SMTP_USERNAME": "u"})
    with pytest.raises(ConfigError, match="each KID once"):
        load_settings(
            {
                "STREAMD_JWT_ALGORITHM": "RS256",
                "STREAMD_JWT_PRIVATE_KEY": str(key),
                "STREAMD_JWT_PREVIOUS_KEYS": f"a={key},a={key}",
            }
        )


def test_hls_settings() -> None:
    s = load_settings(
        {"STREAMD_HLS_LADDER": "480p:854x480@30:1200k", "STREAMD_HLS_RECORDING": "off"}
    )
    assert s.hls_ladder == (("480p", 854, 480, 30, 1_200_000),)
    assert s.hls_recording is False
    assert load_settings({"STREAMD_HLS_LADDER": "none"}).hls_ladder == ()
    assert [r[0] for r in load_settings({}).hls_ladder] == ["720p", "480p", "360p"]


def test_trusted_proxies() -> None:
    assert load_settings({}).trusted_proxies == ()  # forwarded headers believed from no one
    s = load_settings({"STREAMD_TRUSTED_PROXIES": "10.0.0.7, 10.1.0.0/16 ,::1,"})
    assert s.trusted_proxies == ("10.0.0.7", "10.1.0.0/16", "::1")
    assert load_settings({"STREAMD_TRUSTED_PROXIES": "*"}).trusted_proxies == ("*",)


def test_payment_providers_need_their_keys_and_production_no_sandbox() -> None:
    assert load_settings({}).payments_providers == ("sandbox",)
    with pytest.raises(ConfigError, match="STREAMD_MODE=production: the sandbox takes no money"):
        load_settings({"STREAMD_MODE": "production"})
    with pytest.raises(ConfigError, match="expected STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET"):
        load_settings({"STREAMD_PAYMENTS_PROVIDERS": "stripe",
                       "STREAMD_PUBLIC_URL": "https://shop.example"})  # fmt: skip
    stripe = {"STREAMD_PAYMENTS_PROVIDERS": "stripe", "STRIPE_SECRET_KEY": "sk_test_x",
              "STRIPE_WEBHOOK_SECRET": "whsec_x"}  # fmt: skip
    # Return and notification URLs must not come from a request's Host header.
    with pytest.raises(ConfigError, match="expected STREAMD_PUBLIC_URL as well"):
        load_settings(stripe)
    settings = load_settings({**stripe, "STREAMD_PUBLIC_URL": "https://shop.example",
                              "STREAMD_MODE": "production"})  # fmt: skip
    assert settings.payments_providers == ("stripe",)


def test_whip_settings() -> None:
    s = load_settings({})
    assert s.whip_max_publishers == 50 and s.whip_ice_servers == ()
    assert s.whip_url() == "http://localhost:8080/whip"
    servers = ("stun:stun.example.com:3478", "turn:turn.example.com?transport=tcp")
    s = load_settings(
        {"STREAMD_WHIP_ICE_SERVERS": ", ".join(servers), "STREAMD_WHIP_MAX_PUBLISHERS": "0",
         "STREAMD_WHIP_TURN_USERNAME": "u", "STREAMD_WHIP_TURN_CREDENTIAL": "p"}
    )  # fmt: skip
    assert s.whip_ice_servers == servers
    assert s.whip_url() is None
    for bad in ("http://stun.example.com", "stun:", "stun:a b", "stun:[2001:db8::1]:3478",
                "stun:stun.example.com?transport=udp"):  # fmt: skip
        with pytest.raises(ConfigError, match="STREAMD_WHIP_ICE_SERVERS"):
            load_settings({"STREAMD_WHIP_ICE_SERVERS": bad})
    with pytest.raises(ConfigError, match="STREAMD_WHIP_TURN_USERNAME"):
        load_settings({"STREAMD_WHIP_ICE_SERVERS": "turn:turn.example.com"})
    turn = {"STREAMD_WHIP_ICE_SERVERS": "turn:turn.example.com"}
    s = load_settings(
        {**turn, "STREAMD_WHIP_TURN_USERNAME": "u", "STREAMD_WHIP_TURN_CREDENTIAL": "p"}
    )
    assert s.whip_turn_credential == "p"
