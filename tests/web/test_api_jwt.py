"""Attacks on access tokens: each one is a 401, never a 200 or a 500.

Run against every signing algorithm the server offers (HS256, RS256, EdDSA), and for RS256 the
classic algorithm confusion: an HS256 token whose HMAC key is the server's RSA *public* key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from db import users
from tests.web.api_helpers import Api, MakeApi


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (json.loads(base64.urlsafe_b64decode(pad(head))),
            json.loads(base64.urlsafe_b64decode(pad(body))), sig)  # fmt: skip


def _forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    return f"{signing_input}.{_b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def _write_pem(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    return path


def _write_public(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def _settings_for(alg: str, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    if alg == "HS256":
        return {}
    key = rsa_key if alg == "RS256" else ed25519.Ed25519PrivateKey.generate()
    return {"jwt_algorithm": alg, "jwt_private_key": _write_pem(tmp_path / "key.pem", key)}


async def _me(api: Api, token: str) -> tuple[int, str]:
    r = await api.client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code != 500
    return r.status_code, r.json()["error"]["message"] if r.status_code != 200 else ""


@pytest.mark.parametrize("alg", ["HS256", "RS256", "EdDSA"])
async def test_attacks_are_401(
    make_api: MakeApi, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, alg: str
) -> None:
    api = await make_api(**await _settings_for(alg, tmp_path, rsa_key))
    user = await api.make_user()
    header, claims, _ = _segments(user.access)
    assert header["alg"] == alg and header["kid"]
    assert (await _me(api, user.access))[0] == 200

    # alg: none, with and without the kid, with an empty signature.
    for h in ({"alg": "none", "typ": "JWT"}, {**header, "alg": "none"}):
        assert (await _me(api, _forge(h, claims, None)))[0] == 401
    # Tampered payload: another user id (an admin's), signature of the original kept.
    admin = await api.make_user("admin")
    head, _, sig = user.access.split(".")
    tampered = f"{head}.{_b64(json.dumps({**claims, 'sub': str(admin.id)}).encode())}.{sig}"
    assert await _me(api, tampered) == (401, "invalid token")
    # Tampered role claim alone: authorization never reads it, but the signature breaks anyway.
    tampered = f"{head}.{_b64(json.dumps({**claims, 'role': 'admin'}).encode())}.{sig}"
    assert (await _me(api, tampered))[0] == 401
    # Unknown kid.
    keys = api.app.state.keys
    forged = jwt.encode(claims, "k" * 40, "HS256", headers={"kid": "someone-else"})
    assert await _me(api, forged) == (401, "token signed with an unknown key")
    # A kid that exists but with a key of another algorithm than the kid's.
    forged = jwt.encode(claims, "k" * 40, "HS256", headers={"kid": keys.kid})
    assert (await _me(api, forged))[0] == 401
    # Expired (beyond the leeway), validly signed.
    old = keys.issue(user_id=user.id, session_id=_segments(user.access)[1]["sid"], role="viewer",
                     now=time.time() - keys.ttl_s - 60)  # fmt: skip
    assert await _me(api, old) == (401, "token expired")
    # Garbage.
    for junk in ("", "abc", "a.b.c", "Bearer", user.access + "x", "." * 5000):
        assert (await _me(api, junk))[0] == 401
    # Not a bearer header at all.
    r = await api.client.get("/api/users/me", headers={"Authorization": f"Basic {user.access}"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")

    # A deactivated user's (still unexpired, validly signed) token.
    await users.set_role_and_active(api.pool, user.id, role=None, is_active=False)
    assert (await _me(api, user.access))[0] == 401


async def test_hs256_signed_with_the_rs256_public_key(
    make_api: MakeApi, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    api = await make_api(**await _settings_for("RS256", tmp_path, rsa_key))
    user = await api.make_user()
    header, claims, _ = _segments(user.access)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for key in (public_pem, public_pem.strip()):
        forged = _forge({**header, "alg": "HS256"}, claims, key)
        assert await _me(api, forged) == (401, "invalid token")
        forged = _forge({"alg": "HS256", "typ": "JWT"}, claims, key)  # no kid at all
        assert (await _me(api, forged))[0] == 401


async def test_key_rotation_keeps_old_tokens_valid_by_kid(
    make_api: MakeApi, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    old_settings = {
        "jwt_algorithm": "RS256",
        "jwt_key_id": "2025",
        "jwt_private_key": _write_pem(tmp_path / "old.pem", rsa_key),
    }
    old_api = await make_api(**old_settings)
    user = await old_api.make_user()
    assert _segments(user.access)[0]["kid"] == "2025"

    new_key = ed25519.Ed25519PrivateKey.generate()
    rotated = await make_api(
        jwt_algorithm="EdDSA",
        jwt_key_id="2026",
        jwt_private_key=_write_pem(tmp_path / "new.pem", new_key),
        jwt_previous_keys=(("2025", _write_public(tmp_path / "old.pub", rsa_key)),),
    )
    assert (await _me(rotated, user.access))[0] == 200  # issued before the rotation
    fresh = await rotated.make_user()
    assert _segments(fresh.access)[0] == {"alg": "EdDSA", "kid": "2026", "typ": "JWT"}
    assert (await _me(rotated, fresh.access))[0] == 200
    # Once the old key is dropped from the list, its tokens stop working.
    dropped = await make_api(jwt_algorithm="EdDSA", jwt_key_id="2026",
                             jwt_private_key=tmp_path / "new.pem")  # fmt: skip
    assert await _me(dropped, user.access) == (401, "token signed with an unknown key")
    assert (await _me(dropped, fresh.access))[0] == 200


def test_unusable_key_files_are_one_line_config_errors(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    from config.settings import ConfigError, Settings
    from tests.helpers import cli_env, run_cli
    from web.tokens import load_key_set

    ed = _write_pem(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate())
    small = _write_pem(
        tmp_path / "small.pem", rsa.generate_private_key(public_exponent=65537, key_size=1024)
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    cases = [
        (Settings(jwt_algorithm="RS256", jwt_private_key=ed), "expected an RSA private key"),
        (Settings(jwt_algorithm="EdDSA", jwt_private_key=_write_pem(tmp_path / "r.pem", rsa_key)),
         "expected an Ed25519 private key"),
        (Settings(jwt_algorithm="RS256", jwt_private_key=small), "at least 2048 bits"),
        (Settings(jwt_algorithm="RS256", jwt_private_key=junk), "unencrypted PEM private key"),
        (Settings(jwt_algorithm="EdDSA", jwt_private_key=ed, jwt_previous_keys=(("old", junk),)),
         "is not a PEM public key"),
    ]  # fmt: skip
    for settings, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_key_set(settings)
    result = run_cli("check", env=cli_env(tmp_path / "var", STREAMD_JWT_ALGORITHM="RS256",
                                          STREAMD_JWT_PRIVATE_KEY=str(ed)))  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("streamd: STREAMD_JWT_PRIVATE_KEY=")
    assert "Traceback" not in result.stderr
