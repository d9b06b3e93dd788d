"""CloudFront signed URLs and cookies (web.cdn): signatures checked with the public key, and
CloudFront's rules (resource, expiry, source IP) applied to the generated policy by
:func:`cloudfront_allows`, since nothing here runs CloudFront itself."""

from __future__ import annotations

import base64
import datetime
import fnmatch
import ipaddress
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.signers import CloudFrontSigner as BotocoreSigner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from web.cdn import CloudFrontSigner, cloudfront_b64, policy_json

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOW = 1_800_000_000


def unb64(text: str) -> bytes:
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")))


def cloudfront_allows(
    url: str, now: float, *, cookies: dict[str, str] | None = None, ip: str = "192.0.2.1"
) -> bool:
    """CloudFront's check of a signed request, as documented: signature over the (canned or
    custom) policy with the trusted public key, then resource, time and IP conditions."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    plain = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if cookies is not None:
        query = {k.removeprefix("CloudFront-"): v for k, v in cookies.items()}
    if "Policy" in query:
        policy = unb64(query["Policy"])
    elif "Expires" in query:
        # Canned: the resource is the URL without the signing parameters.
        policy = policy_json(plain, int(query["Expires"]))
    else:
        return False
    try:
        KEY.public_key().verify(
            unb64(query["Signature"]), policy, padding.PKCS1v15(), hashes.SHA1()
        )
    except InvalidSignature:
        return False
    statement = json.loads(policy)["Statement"][0]
    condition = statement["Condition"]
    if not fnmatch.fnmatchcase(plain, statement["Resource"]):
        return False
    if now >= condition["DateLessThan"]["AWS:EpochTime"]:
        return False
    if now < condition.get("DateGreaterThan", {}).get("AWS:EpochTime", 0):
        return False
    if "IpAddress" in condition:
        network = ipaddress.ip_network(condition["IpAddress"]["AWS:SourceIp"])
        if ipaddress.ip_address(ip) not in network:
            return False
    return query.get("Key-Pair-Id") == "K2JCJMDEHXQW5F"


@pytest.fixture
def signer() -> CloudFrontSigner:
    return CloudFrontSigner("K2JCJMDEHXQW5F", KEY, ttl=300, clock=lambda: NOW)


def test_cloudfront_base64_is_url_safe() -> None:
    assert cloudfront_b64(bytes([0xFB, 0xFF, 0xBF])) == "-~-~"
    assert cloudfront_b64(b"a") == "YQ__"


def test_canned_url_matches_botocore_and_verifies(signer: CloudFrontSigner) -> None:
    url = "https://d111111abcdef8.cloudfront.net/hls/7/master.m3u8"
    signed = signer.signed_url(url)
    query = parse_qs(urlsplit(signed).query)
    assert query["Expires"] == [str(NOW + 300)] and query["Key-Pair-Id"] == ["K2JCJMDEHXQW5F"]
    # botocore's independent implementation gives the very same URL.
    expires = datetime.datetime.fromtimestamp(NOW + 300, datetime.UTC)
    reference = BotocoreSigner(
        "K2JCJMDEHXQW5F", lambda m: KEY.sign(m, padding.PKCS1v15(), hashes.SHA1())
    ).generate_presigned_url(url, date_less_than=expires)
    assert signed == reference
    assert cloudfront_allows(signed, NOW)
    assert cloudfront_allows(signed, NOW + 299)
    assert not cloudfront_allows(signed, NOW + 300)  # expired
    assert not cloudfront_allows(signed.replace("master.m3u8", "other.m3u8"), NOW)
    assert not cloudfront_allows(signed.replace(f"Expires={NOW + 300}", "Expires=9999999999"), NOW)


def test_custom_policy_covers_a_whole_live_until_it_expires(signer: CloudFrontSigner) -> None:
    base = "https://cdn.example.com/streamd/hls/7"
    signed = signer.signed_url(
        f"{base}/master.m3u8", resource=f"{base}/*", not_before=NOW - 10, source_ip="192.0.2.0/24"
    )
    query = parse_qs(urlsplit(signed).query)
    assert set(query) == {"Policy", "Signature", "Key-Pair-Id"}
    policy = json.loads(unb64(query["Policy"][0]))
    assert policy == {"Statement": [{"Resource": f"{base}/*", "Condition": {
        "DateLessThan": {"AWS:EpochTime": NOW + 300},
        "DateGreaterThan": {"AWS:EpochTime": NOW - 10},
        "IpAddress": {"AWS:SourceIp": "192.0.2.0/24"},
    }}]}  # fmt: skip
    assert cloudfront_allows(signed, NOW)
    segment = signed.replace("master.m3u8", "b1/source/seg_3.m4s")
    assert cloudfront_allows(segment, NOW)  # the wildcard covers every object of the live
    assert not cloudfront_allows(segment, NOW + 301)
    assert not cloudfront_allows(signed, NOW - 20)  # not yet valid
    assert not cloudfront_allows(signed, NOW, ip="198.51.100.7")
    other_live = signed.replace("/hls/7/", "/hls/8/")
    assert not cloudfront_allows(other_live, NOW)
    # A policy edited by the holder no longer matches its signature.
    forged = json.dumps({"Statement": [{"Resource": "https://cdn.example.com/*", "Condition":
                         {"DateLessThan": {"AWS:EpochTime": NOW + 10**6}}}]},
                        separators=(",", ":")).encode()  # fmt: skip
    tampered = signed.replace(query["Policy"][0], cloudfront_b64(forged))
    assert not cloudfront_allows(tampered, NOW)


def test_signed_cookies_grant_the_resource_until_expiry(signer: CloudFrontSigner) -> None:
    resource = "https://cdn.example.com/streamd/hls/7/*"
    cookies = signer.signed_cookies(resource, expires=NOW + 60)
    assert set(cookies) == {"CloudFront-Policy", "CloudFront-Signature", "CloudFront-Key-Pair-Id"}
    assert all(c not in v for v in cookies.values() for c in "+/= ;,")  # cookie-safe values
    url = "https://cdn.example.com/streamd/hls/7/b1/source/seg_1.m4s"
    assert cloudfront_allows(url, NOW + 59, cookies=cookies)
    assert not cloudfront_allows(url, NOW + 60, cookies=cookies)
    assert not cloudfront_allows(url.replace("/7/", "/70/"), NOW, cookies=cookies)
    default = signer.signed_cookies(resource)  # the configured TTL
    assert json.loads(unb64(default["CloudFront-Policy"]))["Statement"][0]["Condition"] == {
        "DateLessThan": {"AWS:EpochTime": NOW + 300}
    }
