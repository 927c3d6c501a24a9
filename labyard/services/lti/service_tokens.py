"""OAuth2 client credentials with a signed JWT assertion (RFC 7523), as LTI Advantage asks:
the access tokens labyard uses for a platform's grade (AGS) and roster (NRPS) services."""

from __future__ import annotations

import logging
import threading
import time

import httpx

from labyard.errors import ProviderFailure
from labyard.services.lti.keys import ToolKeys
from labyard.services.lti.registrations import Platform

log = logging.getLogger(__name__)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
LINEITEM_READ = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
MEMBERSHIPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
TIMEOUT_S = 15.0


class ServiceTokens:
    """Access tokens per platform and scopes, reused until a minute before they expire."""

    def __init__(self, tool_keys: ToolKeys) -> None:
        self.tool_keys = tool_keys
        self._cache: dict[tuple[int, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def token(self, platform: Platform, scopes: list[str]) -> str:
        scope = " ".join(sorted(set(scopes)))
        with self._lock:
            expires, token = self._cache.get((platform.id, scope), (0.0, ""))
        if token and expires > time.monotonic() + 60:
            return token
        assertion = self.tool_keys.sign(
            {"iss": platform.client_id, "sub": platform.client_id, "aud": platform.token_url}
        )
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": scope,
        }
        try:
            response = httpx.post(platform.token_url, data=form, timeout=TIMEOUT_S)
            response.raise_for_status()
            body = response.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 3600))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ProviderFailure(
                f"the platform {platform.issuer} refused labyard an access token ({scope})",
                detail=f"{platform.token_url}: {exc}",
                reason="lti_token_refused",
            ) from exc
        with self._lock:
            self._cache[(platform.id, scope)] = (time.monotonic() + lifetime, token)
        return token

    def forget(self, platform: Platform) -> None:
        """Drop a platform's cached tokens (after a 401: revoked or rotated)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == platform.id]:
                del self._cache[key]
