"""Storage and CDN settings: what an operator sets, and one precise line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client import CollectorRegistry

from config.settings import ConfigError, load_settings
from packager.storage.local import LocalStorage
from packager.storage.s3 import S3Storage
from streamd.media import build_storage
from web.cdn import CloudFrontSigner


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def rsa_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cdn") / "cloudfront.pem"
    path.write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    return path


def test_local_storage_is_the_default() -> None:
    s = load_settings({})
    assert s.storage == "local" and s.s3_bucket is None and s.cdn_base_url is None
    assert s.hls_base_url() == "http://localhost:8080"
    storage = build_storage(s, CollectorRegistry())
    assert isinstance(storage, LocalStorage)
    assert storage.url_for("hls/1/master.m3u8") == "/hls/1/master.m3u8"


def test_s3_and_cloudfront_settings(rsa_key_file: Path) -> None:
    s = load_settings({
        "STREAMD_STORAGE": "S3",
        "STREAMD_S3_BUCKET": "my-live-bucket",
        "STREAMD_S3_PREFIX": "/streamd/prod/",
        "STREAMD_S3_REGION": "eu-west-1",
        "STREAMD_S3_ENDPOINT_URL": "https://minio.internal:9000/",
        "STREAMD_CDN_BASE_URL": "https://d111111abcdef8.cloudfront.net/",
        "STREAMD_CDN_KEY_PAIR_ID": "K2JCJMDEHXQW5F",
        "STREAMD_CDN_PRIVATE_KEY": str(rsa_key_file),
        "STREAMD_CDN_SIGNED_URL_TTL": "600",
    })  # fmt: skip
    assert (s.storage, s.s3_bucket, s.s3_prefix, s.s3_region) == (
        "s3", "my-live-bucket", "streamd/prod", "eu-west-1",
    )  # fmt: skip
    assert s.s3_endpoint_url == "https://minio.internal:9000"
    assert s.cdn_base_url == "https://d111111abcdef8.cloudfront.net"
    # Playback URLs: the CDN, with the bucket prefix (the CDN's origin is the bucket).
    assert s.hls_base_url() == "https://d111111abcdef8.cloudfront.net/streamd/prod"
    storage = build_storage(s, CollectorRegistry())
    assert isinstance(storage, S3Storage)
    assert storage.options.endpoint_url == "https://minio.internal:9000"
    assert storage.url_for("hls/3/master.m3u8") == f"{s.hls_base_url()}/hls/3/master.m3u8"
    storage.close()
    signer = CloudFrontSigner.from_settings(s)
    assert signer is not None and signer.key_pair_id == "K2JCJMDEHXQW5F" and signer.ttl == 600


def test_a_cdn_in_front_of_local_storage() -> None:
    s = load_settings({"STREAMD_CDN_BASE_URL": "https://cdn.example.com"})
    assert s.hls_base_url() == "https://cdn.example.com"
    storage = build_storage(s, CollectorRegistry())
    assert storage.url_for("hls/1/b/poster.jpg") == "https://cdn.example.com/hls/1/b/poster.jpg"
    assert CloudFrontSigner.from_settings(s) is None


INVALID = [
    ({"STREAMD_STORAGE": "gcs"}, "STREAMD_STORAGE='gcs' is invalid: expected one of local, s3"),
    ({"STREAMD_STORAGE": "s3"}, "STREAMD_STORAGE=s3 is invalid: expected STREAMD_S3_BUCKET"),
    ({"STREAMD_STORAGE": "s3", "STREAMD_S3_BUCKET": "My_Bucket"},
     "STREAMD_S3_BUCKET='My_Bucket' is invalid: expected an S3 bucket name"),
    ({"STREAMD_STORAGE": "s3", "STREAMD_S3_BUCKET": "a..b"}, "expected an S3 bucket name"),
    ({"STREAMD_STORAGE": "s3", "STREAMD_S3_BUCKET": "ok-bucket", "STREAMD_S3_PREFIX": "a/../b"},
     "STREAMD_S3_PREFIX='a/../b' is invalid: expected a key prefix"),
    ({"STREAMD_STORAGE": "s3", "STREAMD_S3_BUCKET": "ok-bucket", "STREAMD_S3_PREFIX": "a b"},
     "expected a key prefix"),
    ({"STREAMD_STORAGE": "s3", "STREAMD_S3_BUCKET": "ok-bucket", "STREAMD_S3_REGION": "Mars"},
     "STREAMD_S3_REGION='Mars' is invalid: expected an AWS region"),
    ({"STREAMD_STORAGE": "s3", "STREAMD_S3_BUCKET": "ok-bucket",
      "STREAMD_S3_ENDPOINT_URL": "minio:9000"},
     "STREAMD_S3_ENDPOINT_URL='minio:9000' is invalid: expected an http:// or https:// URL"),
    ({"STREAMD_S3_BUCKET": "ok-bucket"},
     "STREAMD_S3_BUCKET is invalid: expected STREAMD_STORAGE=s3 with it"),
    ({"STREAMD_CDN_BASE_URL": "https://cdn.example.com/?x=1"},
     "STREAMD_CDN_BASE_URL='https://cdn.example.com/?x=1' is invalid: expected an http(s) URL "
     "without a query"),
    ({"STREAMD_CDN_BASE_URL": "cdn.example.com"}, "expected an http(s) URL"),
    ({"STREAMD_CDN_KEY_PAIR_ID": "k2jc"}, "expected a CloudFront public key (key pair) id"),
    ({"STREAMD_CDN_KEY_PAIR_ID": "K2JCJMDEHXQW5F", "STREAMD_CDN_BASE_URL": "https://c.example"},
     "STREAMD_CDN_KEY_PAIR_ID is invalid: expected it together with STREAMD_CDN_PRIVATE_KEY"),
    ({"STREAMD_CDN_PRIVATE_KEY": "/nonexistent/key.pem"},
     "STREAMD_CDN_PRIVATE_KEY='/nonexistent/key.pem' is invalid: expected the path of a "
     "readable file"),
    ({"STREAMD_CDN_SIGNED_URL_TTL": "0"}, "expected a number from 1 to 604800"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "message"), INVALID)
def test_bad_values_are_one_precise_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_signing_needs_a_cdn_and_an_rsa_key(rsa_key_file: Path, tmp_path: Path) -> None:
    signing = {"STREAMD_CDN_KEY_PAIR_ID": "K2JCJMDEHXQW5F",
               "STREAMD_CDN_PRIVATE_KEY": str(rsa_key_file)}  # fmt: skip
    with pytest.raises(ConfigError, match="expected STREAMD_CDN_BASE_URL"):
        load_settings(signing)
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    for bad in (ec_key, garbage):
        env = {**signing, "STREAMD_CDN_PRIVATE_KEY": str(bad),
               "STREAMD_CDN_BASE_URL": "https://c.example"}  # fmt: skip
        with pytest.raises(ConfigError, match="expected an unencrypted PEM RSA private key"):
            load_settings(env)


def test_the_toml_file_takes_the_same_settings(tmp_path: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(
        'storage = "s3"\ns3_bucket = "from-file"\ncdn_base_url = "https://cdn.example.com"\n'
    )
    s = load_settings({}, config)
    assert (s.storage, s.s3_bucket, s.cdn_base_url) == (
        "s3",
        "from-file",
        "https://cdn.example.com",
    )
