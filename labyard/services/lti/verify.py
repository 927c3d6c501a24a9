"""Verifying a platform's id_token: signature against the platform's JWKS (cached, fetched
again on an unknown `kid`), `iss`, `aud` (and `azp`), `exp`/`iat`, the nonce labyard sent,
the LTI version, message type and a registered `deployment_id`.

Every refusal is a `LaunchRefused` whose message says what was wrong, for the page the
browser shows; nothing is stored before all of this has passed (the nonce's single use is
the launch's first write, launch.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import jwt

from labyard.errors import LabyardError
from labyard.services.lti.registrations import Platform

log = logging.getLogger(__name__)
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
RESOURCE_LINK = "LtiResourceLinkRequest"
DEEP_LINKING = "LtiDeepLinkingRequest"
MESSAGE_TYPES = (RESOURCE_LINK, DEEP_LINKING)
LEEWAY_S = 60
"""Clock difference tolerated between the platform and labyard."""
JWKS_TTL_S = 3600.0
REFETCH_AFTER_S = 10.0
"""An unknown kid fetches the JWKS again, but not more often than this (forged tokens
with random kids must not turn labyard into a request amplifier)."""


class LaunchRefused(LabyardError):
    """An LTI launch (or login initiation) that is not accepted; the message says why."""

    reason = "lti_launch_refused"
    exit_code = 2
    http_status = 400


class PlatformKeys:
    """The platforms' public keys, by JWKS URL, kept for an hour."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._keys: dict[str, tuple[float, dict[str, jwt.PyJWK]]] = {}
        self._lock = threading.Lock()

    def _fetch(self, url: str) -> dict[str, jwt.PyJWK]:
        try:
            response = httpx.get(url, timeout=self.timeout_s, follow_redirects=False)
            response.raise_for_status()
            found = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            log.warning("LTI: fetching the platform keys at %s failed: %s", url, exc)
            raise LaunchRefused(
                "the platform's public keys could not be fetched, so the launch cannot be "
                "checked; try again, or ask the administrator to check the platform's JWKS URL",
                detail=str(exc),
            ) from exc
        keys = {key.key_id or "": key for key in found.keys}
        with self._lock:
            self._keys[url] = (time.monotonic(), keys)
        return keys

    def key(self, url: str, kid: str) -> jwt.PyJWK:
        with self._lock:
            fetched_at, keys = self._keys.get(url, (0.0, {}))
        age = time.monotonic() - fetched_at
        if (kid not in keys and (age > REFETCH_AFTER_S or not keys)) or age > JWKS_TTL_S:
            keys = self._fetch(url)
        if kid not in keys:
            raise LaunchRefused(
                f"the launch is signed with a key ({kid!r}) the platform does not publish"
            )
        return keys[kid]


def unverified_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a token, not yet verified: only to find whose it says it is."""
    try:
        return jwt.get_unverified_header(token), jwt.decode(
            token, options={"verify_signature": False}
        )
    except jwt.PyJWTError as exc:
        raise LaunchRefused("the launch's id_token is not a JWT") from exc


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else [a for a in aud or [] if isinstance(a, str)]


def verify_id_token(
    token: str, platform: Platform, keys: PlatformKeys, nonce: str
) -> dict[str, Any]:
    """The id_token's claims, once everything about it has been checked."""
    header, _ = unverified_claims(token)
    if header.get("alg") != "RS256":
        raise LaunchRefused(f"the launch is signed with {header.get('alg')!r}; LTI 1.3 uses RS256")
    key = keys.key(platform.jwks_url, str(header.get("kid") or ""))
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=platform.client_id,
            issuer=platform.issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise LaunchRefused("the launch has expired; open the link in the LMS again") from exc
    except jwt.InvalidSignatureError as exc:
        raise LaunchRefused("the launch's signature is not the platform's") from exc
    except jwt.InvalidAudienceError as exc:
        raise LaunchRefused(
            f"the launch is not for this tool (its aud is not client id {platform.client_id})"
        ) from exc
    except jwt.ImmatureSignatureError as exc:
        raise LaunchRefused("the launch is dated in the future (iat); check the clocks") from exc
    except jwt.PyJWTError as exc:
        raise LaunchRefused(f"the launch's id_token is not valid: {exc}") from exc
    _check_azp(claims, platform)
    if claims.get("iat", 0) > time.time() + LEEWAY_S:
        raise LaunchRefused("the launch is dated in the future (iat); check the clocks")
    if claims.get("nonce") != nonce:
        raise LaunchRefused("the launch's nonce is not the one this browser's sign-in asked for")
    _check_lti(claims, platform)
    return claims


def _check_azp(claims: dict[str, Any], platform: Platform) -> None:
    azp = claims.get("azp")
    if len(audiences(claims)) > 1 and azp is None:
        raise LaunchRefused("the launch has several audiences but no azp naming this tool")
    if azp is not None and azp != platform.client_id:
        raise LaunchRefused(f"the launch's azp is not this tool's client id {platform.client_id}")


def _check_lti(claims: dict[str, Any], platform: Platform) -> None:
    version = claims.get(LTI + "version")
    if version != "1.3.0":
        raise LaunchRefused(f"the launch is LTI version {version!r}; labyard speaks 1.3.0")
    kind = claims.get(LTI + "message_type")
    if kind not in MESSAGE_TYPES:
        raise LaunchRefused(f"the launch's message type {kind!r} is not one labyard handles")
    deployment = claims.get(LTI + "deployment_id")
    if deployment not in platform.deployment_ids:
        raise LaunchRefused(
            f"deployment {deployment!r} of {platform.issuer} is not registered with labyard; "
            "the administrator adds it to the platform's registration"
        )
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise LaunchRefused("the launch names no user (sub); anonymous launches are refused")
    if kind == RESOURCE_LINK and not (claims.get(LTI + "resource_link") or {}).get("id"):
        raise LaunchRefused("the launch names no resource link (resource_link.id)")
    settings = claims.get("https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings")
    if kind == DEEP_LINKING and not (settings or {}).get("deep_link_return_url"):
        raise LaunchRefused("the deep-linking launch has no deep_link_return_url")
