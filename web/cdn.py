"""CloudFront signed URLs and signed cookies, for content that is not public.

CloudFront checks an RSA-SHA1 signature (PKCS#1 v1.5) over a JSON *policy* made with the
private key of a key pair whose public key is in the distribution's trusted key group:

- a *canned* policy names one URL and an expiry; the URL then carries ``Expires``,
  ``Signature`` and ``Key-Pair-Id`` (the policy itself is rebuilt by CloudFront);
- a *custom* policy may use a wildcard resource (``https://cdn/hls/7/*``: a whole live or VOD,
  as HLS needs, since a player asks for many objects) and optional not-before and source-IP
  conditions; it travels base64-encoded as ``Policy`` (URL query) or ``CloudFront-Policy``
  (cookie).

Base64 is CloudFront's URL-safe variant: ``+`` -> ``-``, ``=`` -> ``_``, ``/`` -> ``~``. The
policy JSON must have no whitespace for canned policies (CloudFront compares it byte for byte).
Playback URLs the API returns today are public; payments will hand signed cookies to buyers.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from config.settings import Settings

_B64_TABLE = str.maketrans({"+": "-", "=": "_", "/": "~"})


def cloudfront_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").translate(_B64_TABLE)


def policy_json(
    resource: str, expires: int, *, not_before: int | None = None, source_ip: str | None = None
) -> bytes:
    """The policy document, compact (the canned form is exactly CloudFront's own)."""
    condition: dict[str, object] = {"DateLessThan": {"AWS:EpochTime": expires}}
    if not_before is not None:
        condition["DateGreaterThan"] = {"AWS:EpochTime": not_before}
    if source_ip is not None:
        condition["IpAddress"] = {"AWS:SourceIp": source_ip}
    statement = {"Resource": resource, "Condition": condition}
    return json.dumps({"Statement": [statement]}, separators=(",", ":")).encode()


class CloudFrontSigner:
    def __init__(
        self,
        key_pair_id: str,
        private_key: RSAPrivateKey,
        *,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_pair_id = key_pair_id
        self.private_key = private_key
        self.ttl = ttl
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudFrontSigner | None:
        """None when signing is not configured (config/ checked the key when loading)."""
        if settings.cdn_key_pair_id is None or settings.cdn_private_key is None:
            return None
        key = load_pem_private_key(settings.cdn_private_key.read_bytes(), password=None)
        if not isinstance(key, RSAPrivateKey):
            raise TypeError("STREAMD_CDN_PRIVATE_KEY is not an RSA private key")
        return cls(settings.cdn_key_pair_id, key, ttl=settings.cdn_signed_url_ttl)

    def expiry(self, ttl: float | None = None) -> int:
        return int(self.clock() + (self.ttl if ttl is None else ttl))

    def sign(self, message: bytes) -> str:
        signature = self.private_key.sign(message, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - CloudFront's algorithm
        return cloudfront_b64(signature)

    def signed_url(
        self,
        url: str,
        *,
        expires: int | None = None,
        resource: str | None = None,
        not_before: int | None = None,
        source_ip: str | None = None,
    ) -> str:
        """``url`` signed: canned when only an expiry applies, custom otherwise (a wildcard
        ``resource``, a start time or a source IP range)."""
        expires = self.expiry() if expires is None else expires
        sep = "&" if "?" in url else "?"
        if resource is None and not_before is None and source_ip is None:
            signature = self.sign(policy_json(url, expires))
            query = {"Expires": str(expires), "Signature": signature}
        else:
            document = policy_json(
                resource or url, expires, not_before=not_before, source_ip=source_ip
            )
            query = {"Policy": cloudfront_b64(document), "Signature": self.sign(document)}
        query["Key-Pair-Id"] = self.key_pair_id
        # Signature and policy are already URL-safe; urlencode leaves -, _ and ~ alone.
        return f"{url}{sep}{urlencode(query)}"

    def signed_cookies(
        self, resource: str, *, expires: int | None = None, source_ip: str | None = None
    ) -> dict[str, str]:
        """The three cookies granting ``resource`` (a wildcard such as
        ``https://cdn.example.com/hls/7/*``) until ``expires``; set them on the CDN's domain."""
        document = policy_json(
            resource, self.expiry() if expires is None else expires, source_ip=source_ip
        )
        return {
            "CloudFront-Policy": cloudfront_b64(document),
            "CloudFront-Signature": self.sign(document),
            "CloudFront-Key-Pair-Id": self.key_pair_id,
        }
