"""Deep linking: a teacher picks a challenge inside the LMS, on labyard's page; labyard
answers the platform with a signed `LtiDeepLinkingResponse` holding the content item (an
LTI resource link that opens the challenge, with a line item for its grade).

The request a deep-linking launch brought travels to the picker page and back as a token
labyard signed itself (launch.py), bound to the teacher's account and valid for an hour,
so nothing about it is stored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from labyard.errors import Forbidden, InvalidInput
from labyard.services.accounts import User
from labyard.services.lti.keys import ToolKeys
from labyard.services.lti.launch import DEEP_LINK_AUDIENCE
from labyard.services.lti.registrations import Registrations
from labyard.services.lti.targets import ContentFinder, Target
from labyard.services.lti.verify import LTI

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


@dataclass(frozen=True)
class Picking:
    """A deep-linking request being answered: for whom, and where the answer goes."""

    token: str
    account: int
    platform: int
    deployment_id: str
    return_url: str
    data: str | None
    context: str


@dataclass(frozen=True)
class Response:
    """The form the browser posts to the platform: `JWT` to `return_url`."""

    return_url: str
    jwt: str


class DeepLinking:
    def __init__(
        self, tool_keys: ToolKeys, registrations: Registrations, content: ContentFinder
    ) -> None:
        self.tool_keys = tool_keys
        self.registrations = registrations
        self.content = content

    def picking(self, token: str, user: User) -> Picking:
        """The request in `token`, if labyard signed it for `user` and it is recent."""
        try:
            claims = self.tool_keys.verify_own(token, DEEP_LINK_AUDIENCE)
        except jwt.ExpiredSignatureError as exc:
            raise InvalidInput(
                "this content picker has expired; open it from the LMS again"
            ) from exc
        except jwt.PyJWTError as exc:
            raise InvalidInput("this is not a content picker labyard opened") from exc
        if claims.get("account") != user.id:
            raise Forbidden("this content picker was opened for another account")
        return Picking(
            token,
            int(claims["account"]),
            int(claims["platform"]),
            str(claims["deployment_id"]),
            str(claims["return_url"]),
            claims.get("data"),
            str(claims.get("context") or ""),
        )

    def choices(self) -> list[Target]:
        return self.content.pickable()

    def respond(self, picking: Picking, content_key: str, launch_url: str) -> Response:
        """The signed answer naming the picked content (InvalidInput for unknown content)."""
        target = self.content.target(content_key)  # NotFound for anything else
        platform = self.registrations.get(picking.platform)
        item: dict[str, Any] = {
            "type": "ltiResourceLink",
            "title": target.title,
            "url": launch_url,
            "custom": {"content": target.key},
            "lineItem": {
                "scoreMaximum": max(target.tasks, 1),
                "label": target.title,
                "resourceId": target.key,
            },
        }
        claims: dict[str, Any] = {
            "iss": platform.client_id,
            "aud": platform.issuer,
            "azp": platform.client_id,
            "nonce": secrets.token_urlsafe(16),
            LTI + "message_type": "LtiDeepLinkingResponse",
            LTI + "version": "1.3.0",
            LTI + "deployment_id": picking.deployment_id,
            DL + "content_items": [item],
        }
        if picking.data is not None:
            claims[DL + "data"] = picking.data
        return Response(picking.return_url, self.tool_keys.sign(claims))
