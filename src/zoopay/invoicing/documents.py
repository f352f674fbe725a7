"""An invoice as a document: a PDF (fpdf2) and an HTML page that say the same things.

Amounts print with 2 to 6 decimals (a usage line may be priced to the micro-dollar); the
totals are whole cents. fpdf2's built-in Helvetica is Latin-1 only: a character outside it
(a name in another script) prints as "?" in the PDF; the HTML page shows it as it is.
"""

import html
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from fpdf import FPDF
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.accounts.service import OrgRole
from zoopay.db.tables import org_members, orgs, users
from zoopay.invoicing.service import Invoice, InvoiceStatus
from zoopay.ledger.service import Customer
from zoopay.money import format_micros


@dataclass(frozen=True)
class Issuer:
    name: str
    address: str


def _usd(micros: int) -> str:
    return f"{format_micros(micros)} USD"


def _date(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "-"


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"


def summary(invoice: Invoice) -> list[tuple[str, str]]:
    """The totals block, in order: what both documents print under the lines."""
    tax_label = "Tax"
    if invoice.tax_rate:
        tax_label = f"Tax ({_percent(invoice.tax_rate)}, {invoice.country})"
    rows = [
        ("Subtotal", _usd(invoice.subtotal_micros)),
        (tax_label, _usd(invoice.tax_micros)),
        ("Total", _usd(invoice.total_micros)),
        ("Amount paid", _usd(invoice.amount_paid_micros)),
    ]
    if invoice.amount_refunded_micros:
        rows.append(("Amount refunded", _usd(invoice.amount_refunded_micros)))
    rows.append(("Amount due", _usd(invoice.amount_remaining_micros)))
    return rows


def heading(invoice: Invoice) -> list[tuple[str, str]]:
    status = {InvoiceStatus.OPEN: "open (due)", InvoiceStatus.PAID: "paid"}.get(
        invoice.status, invoice.status.value
    )
    rows = [
        ("Invoice number", invoice.number or "draft"),
        ("Date of issue", _date(invoice.finalized_at or invoice.created_at)),
        ("Status", status),
    ]
    if invoice.paid_at:
        rows.append(("Date paid", _date(invoice.paid_at)))
    return rows


async def account_email(conn: AsyncConnection, *, customer: Customer) -> str | None:
    """Where the account's mail goes, for an invoice that names no email (billing issues its
    invoices without billing information): a user's email; an org's billing email, or its
    first admin's when the org has none."""
    if customer.kind == "user":
        query = select(users.c.email).where(users.c.id == customer.id)
    else:
        admin = (
            select(users.c.email)
            .join(org_members, org_members.c.user_id == users.c.id)
            .where(org_members.c.org_id == customer.id, org_members.c.role == OrgRole.ADMIN.value)
            .order_by(org_members.c.created_at, users.c.id)
            .limit(1)
            .scalar_subquery()
        )
        query = select(func.coalesce(func.nullif(orgs.c.billing_email, ""), admin)).where(
            orgs.c.id == customer.id
        )
    email = (await conn.execute(query)).scalar_one_or_none()
    return str(email) if email else None


def customer_block(invoice: Invoice, account_email: str | None = None) -> list[str]:
    """Bill to: the invoice's name and email, else the account's email (`account_email`);
    the customer's id only when there is no email at all."""
    email = invoice.customer_email or account_email
    lines = [invoice.customer_name or "", email or "", invoice.country or ""]
    if not email:
        lines.append(f"Customer id {invoice.customer.id}")
    return [line for line in lines if line]


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def render_pdf(invoice: Invoice, issuer: Issuer, account_email: str | None = None) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"Invoice {invoice.number}"))
    pdf.set_author(_latin1(issuer.name))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(0, 10, "Invoice", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(0, 5, _latin1("\n".join(filter(None, [issuer.name, issuer.address]))))
    pdf.ln(4)
    for label, value in heading(invoice):
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(40, 6, label)
        pdf.set_font("Helvetica", "", 10)
        pdf.cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, "Bill to", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(0, 5, _latin1("\n".join(customer_block(invoice, account_email))))
    pdf.ln(6)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.set_font("Helvetica", "B", 10)
    pdf.set_fill_color(235, 235, 235)
    pdf.cell(width - 45, 7, "Description", border="B", fill=True)
    pdf.cell(45, 7, "Amount", border="B", fill=True, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for line in invoice.lines:
        pdf.cell(width - 45, 7, _latin1(line.description[:90]))
        pdf.cell(45, 7, _usd(line.amount_micros), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for label, value in summary(invoice):
        bold = label in ("Total", "Amount due")
        pdf.set_font("Helvetica", "B" if bold else "", 10)
        pdf.cell(width - 45, 7, label, align="R")
        pdf.cell(45, 7, value, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(0, 4, _latin1(f"{invoice.description}. Amounts in US dollars."))
    return bytes(pdf.output())


def render_html(
    invoice: Invoice, issuer: Issuer, pdf_url: str | None, account_email: str | None = None
) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(line.description)}</td><td class=n>{e(_usd(line.amount_micros))}</td></tr>"
        for line in invoice.lines
    )
    totals = "".join(
        f"<tr><th>{e(label)}</th><td class=n>{e(value)}</td></tr>"
        for label, value in summary(invoice)
    )
    head = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in heading(invoice))
    customer = "<br>".join(e(line) for line in customer_block(invoice, account_email))
    link = f'<p><a href="{e(pdf_url)}">Download PDF</a></p>' if pdf_url else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Invoice {e(invoice.number or "draft")}</title>
<style>body{{font-family:sans-serif;max-width:44em;margin:2em auto}}
table{{width:100%;border-collapse:collapse}}td,th{{padding:.3em;text-align:left}}
.n{{text-align:right}}dt{{font-weight:bold;float:left;width:10em}}</style></head>
<body><h1>Invoice</h1><p>{e(issuer.name)}<br>{e(issuer.address)}</p>
<dl>{head}</dl><h2>Bill to</h2><p>{customer}</p>
<table><thead><tr><th>Description</th><th class=n>Amount</th></tr></thead>
<tbody>{rows}</tbody></table><table>{totals}</table>
<p>{e(invoice.description)}. Amounts in US dollars.</p>{link}</body></html>
"""
