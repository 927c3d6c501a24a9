"""labyard's own RS256 key pair as an LTI tool: made once, kept in the data directory.

    <data dir>/lti/tool-key.pem            the signing key (mode 0600)
    <data dir>/lti/tool-key.previous.pem   optional: a retired key, still published

Platforms verify what labyard signs (deep-linking responses, client assertions for the
grade and roster services) with the keys at /lti/jwks. Rotation (docs/lti.md): rename the
key to `tool-key.previous.pem` and restart; a new key is made and both are published until
the previous one is deleted, after the platforms' key caches have moved on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KEY_FILE = "tool-key.pem"
PREVIOUS_KEY_FILE = "tool-key.previous.pem"


def _thumbprint(public: rsa.RSAPublicKey) -> str:
    """RFC 7638 thumbprint: a kid that names the key itself, the same after every restart."""
    jwk = json.loads(RSAAlgorithm.to_jwk(public))
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _load(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key


def _create(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:  # O_EXCL: two processes starting at once keep one key, the first one's
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load(path)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


class ToolKeys:
    """The tool's signing key (made on first use) and the public keys it publishes."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / "lti"
        self._key: rsa.RSAPrivateKey | None = None

    @property
    def key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            path = self.folder / KEY_FILE
            self._key = _load(path) if path.is_file() else _create(path)
        return self._key

    @property
    def kid(self) -> str:
        return _thumbprint(self.key.public_key())

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: the signing key first, then a retired one if kept."""
        publics = [self.key.public_key()]
        previous = self.folder / PREVIOUS_KEY_FILE
        if previous.is_file():
            publics.append(_load(previous).public_key())
        keys = []
        for public in publics:
            jwk = json.loads(RSAAlgorithm.to_jwk(public))
            keys.append({**jwk, "kid": _thumbprint(public), "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def sign(self, claims: dict[str, Any], lifetime_s: int = 300) -> str:
        """A JWT of `claims` with `iat`, `exp` and a `jti`, signed RS256 with the tool key."""
        issued = int(time.time())
        payload = {"iat": issued, "exp": issued + lifetime_s, "jti": uuid.uuid4().hex, **claims}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})

    def verify_own(self, token: str, audience: str) -> dict[str, Any]:
        """Claims of a token labyard signed itself for `audience` (raises jwt.PyJWTError)."""
        claims: dict[str, Any] = jwt.decode(
            token, self.key.public_key(), algorithms=["RS256"], audience=audience
        )
        return claims
