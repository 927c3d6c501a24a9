"""A small LTI 1.3 platform (an LMS's side) for the tests, with real RS256 keys, served by
uvicorn on 127.0.0.1 in a thread of its own.

No maintained Python library implements the platform side (the one on PyPI,
`lti1p3platform`, is a 0.1 release tied to Django), so this is the platform as the LTI 1.3
Core, Deep Linking 2.0, AGS 2.0 and NRPS 2.0 specifications describe it, as far as labyard
uses it:

    GET  /jwks                   the platform's public key
    GET  /auth                   OIDC authorization: answers the login initiation with an
                                 auto-posting form holding the signed id_token
    POST /token                  client credentials; the tool's JWT assertion is verified
                                 against the tool's JWKS
    GET|POST /lineitems, POST /lineitems/{id}/scores     AGS (bearer token checked)
    GET  /memberships            NRPS (bearer token checked)
    POST /deep-link-return       the tool's LtiDeepLinkingResponse, verified with its JWKS

A test says who launches what with `Launch` (`platform.prepare(launch)` gives the login
initiation's parameters); `tamper` makes the id_token wrong in one way.
"""

from __future__ import annotations

import html
import re
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
CLIENT_ID = "labyard-tool-1"
DEPLOYMENT = "deployment-1"
CONTEXT = "course-101"


@dataclass
class Launch:
    sub: str
    name: str
    roles: list[str]
    message_type: str = "LtiResourceLinkRequest"
    resource_link: str = "link-1"
    custom: dict[str, str] = field(default_factory=dict)
    target_link_uri: str = ""
    tamper: str = ""
    """'' (a correct token), `forged` (signed by another key under the platform's kid),
    `aud` (for another client id), `azp` (several audiences, no azp), `expired`,
    `deployment` (an unregistered deployment)."""
    lineitem: str = ""


def _audience(tamper: str) -> str | list[str]:
    if tamper == "aud":
        return "someone-else"
    return [CLIENT_ID, "another-tool"] if tamper == "azp" else CLIENT_ID


def _key() -> tuple[rsa.RSAPrivateKey, str]:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), uuid.uuid4().hex


class Platform:
    def __init__(self) -> None:
        self.key, self.kid = _key()
        self.impostor, _ = _key()
        self.url = ""
        self.tool_launch_url = ""
        self.tool_jwks_url = ""
        self.launches: dict[str, Launch] = {}
        self.tokens: dict[str, str] = {}
        """Access token -> its scopes."""
        self.lineitems: dict[str, dict[str, Any]] = {}
        self.scores: list[dict[str, Any]] = []
        self.deep_links: list[dict[str, Any]] = []
        self.members: list[dict[str, Any]] = []
        self.assertions: list[dict[str, Any]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- what the tests use ----------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.url

    def registration(self) -> dict[str, Any]:
        """The body of POST /api/admin/lti/platforms for this platform."""
        return {
            "name": "Test LMS",
            "issuer": self.issuer,
            "client_id": CLIENT_ID,
            "deployment_ids": [DEPLOYMENT],
            "jwks_url": f"{self.url}/jwks",
            "auth_url": f"{self.url}/auth",
            "token_url": f"{self.url}/token",
        }

    def prepare(self, launch: Launch) -> dict[str, str]:
        """The login initiation's parameters for `launch` (what the LMS page links to)."""
        hint = secrets.token_urlsafe(12)
        self.launches[hint] = launch
        return {
            "iss": self.issuer,
            "login_hint": launch.sub,
            "target_link_uri": launch.target_link_uri or self.tool_launch_url,
            "lti_message_hint": hint,
            "client_id": CLIENT_ID,
            "lti_deployment_id": DEPLOYMENT,
        }

    def lineitem_for(self, label: str, maximum: float, resource_link: str) -> str:
        """Make a line item (as the LMS does for a deep-linked item with `lineItem`)."""
        item_id = f"{self.url}/lineitems/{len(self.lineitems) + 1}"
        self.lineitems[item_id] = {
            "id": item_id,
            "label": label,
            "scoreMaximum": maximum,
            "resourceLinkId": resource_link,
        }
        return item_id

    # -- id_tokens -------------------------------------------------------------------------

    def id_token(self, launch: Launch, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": _audience(launch.tamper),
            "sub": launch.sub,
            "iat": now - (7200 if launch.tamper == "expired" else 0),
            "exp": now + (-3600 if launch.tamper == "expired" else 300),
            "nonce": nonce,
            "name": launch.name,
            "email": f"{launch.sub}@uni.example",
            LTI + "version": "1.3.0",
            LTI + "message_type": launch.message_type,
            LTI + "deployment_id": "deployment-x" if launch.tamper == "deployment" else DEPLOYMENT,
            LTI + "target_link_uri": launch.target_link_uri or self.tool_launch_url,
            LTI + "roles": launch.roles,
            LTI + "context": {"id": CONTEXT, "title": "Linux 101", "label": "LX101"},
            NRPS: {
                "context_memberships_url": f"{self.url}/memberships",
                "service_versions": ["2.0"],
            },
        }
        if launch.custom:
            claims[LTI + "custom"] = launch.custom
        if launch.message_type == "LtiResourceLinkRequest":
            claims[LTI + "resource_link"] = {"id": launch.resource_link, "title": "Lab 1"}
            claims[AGS] = {
                "scope": [
                    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
                    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
                ],
                "lineitems": f"{self.url}/lineitems",
                **({"lineitem": launch.lineitem} if launch.lineitem else {}),
            }
        else:
            claims[DL + "deep_linking_settings"] = {
                "deep_link_return_url": f"{self.url}/deep-link-return",
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["iframe", "window"],
                "data": "opaque-platform-data",
            }
        key = self.impostor if launch.tamper == "forged" else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    # -- endpoints -------------------------------------------------------------------------

    def _jwks(self, request: Request) -> Response:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]})

    def _auth(self, request: Request) -> Response:
        q = request.query_params
        expected = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": CLIENT_ID,
            "redirect_uri": self.tool_launch_url,
        }
        wrong = {k: q.get(k) for k, v in expected.items() if q.get(k) != v}
        launch = self.launches.pop(q.get("lti_message_hint", ""), None)
        if wrong or launch is None or q.get("login_hint") != launch.sub or not q.get("nonce"):
            return HTMLResponse(f"bad authorization request: {wrong}", status_code=400)
        token = self.id_token(launch, q["nonce"])
        return _form_post(self.tool_launch_url, {"id_token": token, "state": q.get("state", "")})

    def _tool_claims(self, token: str, audience: str, issuer: str) -> dict[str, Any]:
        keys = jwt.PyJWKSet.from_dict(httpx.get(self.tool_jwks_url, timeout=10).json())
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in keys.keys if k.key_id == kid)
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=["RS256"], audience=audience, issuer=issuer
        )
        return claims

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            claims = self._tool_claims(
                str(form.get("client_assertion")), f"{self.url}/token", CLIENT_ID
            )
        except (jwt.PyJWTError, StopIteration, KeyError):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if claims.get("sub") != CLIENT_ID or not claims.get("jti"):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        self.assertions.append(claims)
        token = secrets.token_urlsafe(16)
        self.tokens[token] = str(form.get("scope", ""))
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
             "scope": self.tokens[token]}
        )  # fmt: skip

    def _scope_ok(self, request: Request, scope: str) -> bool:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip()
        return token in self.tokens and scope in self.tokens[token].split()

    async def _lineitems(self, request: Request) -> Response:
        if not self._scope_ok(request, "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if request.method == "POST":
            body = await request.json()
            item_id = self.lineitem_for(
                body["label"], body["scoreMaximum"], body.get("resourceLinkId", "")
            )
            return JSONResponse(self.lineitems[item_id], status_code=201)
        link = request.query_params.get("resource_link_id")
        found = [i for i in self.lineitems.values() if not link or i["resourceLinkId"] == link]
        return JSONResponse(found)

    async def _scores(self, request: Request) -> Response:
        if not self._scope_ok(request, "https://purl.imsglobal.org/spec/lti-ags/scope/score"):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        item_id = f"{self.url}/lineitems/{request.path_params['item']}"
        if item_id not in self.lineitems:
            return JSONResponse({"error": "no such line item"}, status_code=404)
        if request.headers.get("content-type") != "application/vnd.ims.lis.v1.score+json":
            return JSONResponse({"error": "wrong content type"}, status_code=415)
        self.scores.append({"lineitem": item_id, **(await request.json())})
        return Response(status_code=204)

    def _memberships(self, request: Request) -> Response:
        scope = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
        if not self._scope_ok(request, scope):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        page = int(request.query_params.get("page", "1"))
        half = (len(self.members) + 1) // 2
        members = self.members[:half] if page == 1 else self.members[half:]
        headers = {"Link": f'<{self.url}/memberships?page=2>; rel="next"'} if page == 1 else {}
        body = {"id": f"{self.url}/memberships", "context": {"id": CONTEXT}, "members": members}
        return JSONResponse(body, headers=headers)

    async def _deep_link_return(self, request: Request) -> Response:
        token = str((await request.form()).get("JWT", ""))
        try:
            claims = self._tool_claims(token, self.issuer, CLIENT_ID)
        except (jwt.PyJWTError, StopIteration, KeyError) as exc:
            return HTMLResponse(f"refused: {exc}", status_code=400)
        self.deep_links.append(claims)
        return HTMLResponse("content added")

    # -- serving ---------------------------------------------------------------------------

    def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/jwks", self._jwks),
                Route("/auth", self._auth),
                Route("/token", self._token, methods=["POST"]),
                Route("/lineitems", self._lineitems, methods=["GET", "POST"]),
                Route("/lineitems/{item}/scores", self._scores, methods=["POST"]),
                Route("/memberships", self._memberships),
                Route("/deep-link-return", self._deep_link_return, methods=["POST"]),
            ]
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        server = self._server
        self._thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test platform did not start")
            time.sleep(0.02)  # polling a condition under a deadline

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)


def _form_post(action: str, fields: dict[str, str]) -> HTMLResponse:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return HTMLResponse(
        f'<form method="post" action="{html.escape(action)}" id="launch">{inputs}</form>'
        "<script>document.getElementById('launch').submit()</script>"
    )


def form_of(page: str) -> tuple[str, dict[str, str]]:
    """(action, fields) of the auto-posting form in `page` (what a browser would submit)."""
    action = html.unescape(re.search(r'<form[^>]*action="([^"]*)"', page).group(1))  # type: ignore[union-attr]
    fields = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)"', page)
    }
    return action, fields
