"""Invoices over HTTP: the buyer's billing profile, their invoices and credit notes as a
list and as PDFs, and every invoice for admins. Policy lives in services/billing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from labyard.api.deps import LabyardDep, UserDep

router = APIRouter(prefix="/api", tags=["invoices"])


class ProfileBody(BaseModel):
    name: str = Field(max_length=200)
    """Whom invoices are made out to: a person or a company."""
    address: str = Field("", max_length=1000)
    """The postal address, one line per line."""
    country: str = Field(max_length=2)
    """ISO 3166-1 alpha-2, like DE or JP."""
    vat_id: str = Field("", max_length=40)
    """For businesses: the VAT ID invoices show (optional)."""


@router.get("/billing/profile")
def profile(user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """The signed-in account's billing profile (empty fields when none was saved)."""
    return labyard.billing.profiles.get(user).to_json()


@router.put("/billing/profile")
def put_profile(body: ProfileBody, user: UserDep, labyard: LabyardDep) -> dict[str, Any]:
    """Save the billing profile; invoices issued from now on are made out to it (those
    issued already stay as they are)."""
    saved = labyard.billing.profiles.put(user, body.name, body.address, body.country, body.vat_id)
    return saved.to_json()


@router.get("/billing/invoices")
def invoices(user: UserDep, labyard: LabyardDep) -> list[dict[str, Any]]:
    """The signed-in account's invoices and credit notes, newest first."""
    return [invoice.to_json() for invoice in labyard.billing.invoices.list(user)]


@router.get(
    "/billing/invoices/{number}.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def invoice_pdf(number: str, user: UserDep, labyard: LabyardDep) -> Response:
    """One of the signed-in account's invoices or credit notes as a PDF (an admin: any;
    anyone else's is a 404)."""
    pdf = labyard.billing.invoices.pdf(user, number)
    disposition = f'attachment; filename="{number}.pdf"'
    return Response(pdf, media_type="application/pdf", headers={"content-disposition": disposition})


@router.get("/admin/invoices")
def admin_invoices(user: UserDep, labyard: LabyardDep) -> list[dict[str, Any]]:
    """Every invoice and credit note (admins only), newest first."""
    return [invoice.to_json(admin=True) for invoice in labyard.billing.invoices.list_all(user)]
