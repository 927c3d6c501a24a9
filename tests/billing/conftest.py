"""Billing tests on SQLite and PostgreSQL: the app over a fresh database, with Stripe
configured against the local stand-in (stand_in.py) or with the manual provider only."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from labyard.api.app import create_app
from labyard.services import Labyard, User
from labyard.settings import BillingSettings, Settings
from labyard.store import BillingEventRow
from tests.billing.stand_in import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    StandIn,
    stand_in_stripe,
    stripe_signature,
)
from tests.conftest import IMAGES_DIR
from tests.store.databases import KINDS, fresh_database_url

PASSWORD = "a long enough password"


@dataclass
class Shop:
    labyard: Labyard
    app: FastAPI
    stripe: StandIn | None

    def account(
        self, role: str = "learner", address: str = "127.0.0.1"
    ) -> tuple[User, httpx.AsyncClient]:
        """A new account and a client for it, connecting from `address` (the client IP the
        app sees: a public one from a known block sets the buyer's country)."""
        email = f"{role}-{secrets.token_hex(4)}@example.org"
        user = self.labyard.accounts.create_user(email, PASSWORD, role=role)
        token = self.labyard.accounts.issue(user, "api", "billing test")
        return user, self.client(token, address)

    def client(self, token: str | None = None, address: str = "127.0.0.1") -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(address, 40000)),
            base_url="http://testserver",
            headers=headers,
            timeout=30,
        )

    async def deliver(
        self, payload: dict[str, Any] | bytes, signature: str | None = None
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        headers["stripe-signature"] = signature or stripe_signature(body)
        async with self.client() as client:
            return await client.post("/api/billing/webhooks/stripe", content=body, headers=headers)

    def inbox(self) -> int:
        with self.labyard.db.session() as session:
            return int(session.scalar(select(func.count(BillingEventRow.id))) or 0)


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


def _shop(database_url: str, tmp_path: Path, stripe: StandIn | None) -> Shop:
    settings = Settings(
        data_dir=tmp_path / "data",
        images_dir=IMAGES_DIR,
        database_url=database_url,
        billing=BillingSettings(
            stripe_secret_key=SECRET_KEY if stripe else "",
            stripe_webhook_secret=WEBHOOK_SECRET if stripe else "",
            stripe_api_base=stripe.url if stripe else "",
        ),
    )
    labyard = Labyard(settings)
    return Shop(labyard, create_app(labyard, reconcile_interval_s=None), stripe)


@pytest.fixture
async def shop(database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """Stripe, against the stand-in."""
    with stand_in_stripe() as stripe:
        found = _shop(database_url, tmp_path, stripe)
        yield found
        found.labyard.close()


@pytest.fixture
async def manual_shop(database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """No Stripe settings: checkouts go through the manual provider."""
    found = _shop(database_url, tmp_path, None)
    yield found
    found.labyard.close()
