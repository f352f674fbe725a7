"""The customer's side of money movement: who they are at the processor, their billing
information, and the usage threshold at which billing invoices early.

The processor answers from outside zoopay's transactions (each of its calls commits on its
own), so the functions that call it take the engine, and call it while holding no write
transaction of zoopay's: on SQLite that lock would make the processor wait for it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.db.bulk import insert_new, select_by, select_where_one_of
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import balances, invoices, orgs, payment_customers, users
from zoopay.errors import Conflict, NotFound
from zoopay.ledger.service import Customer
from zoopay.processors.base import (
    CustomerRequest,
    CustomerResult,
    PaymentProcessor,
    ProcessorError,
    ProcessorUnavailable,
)
from zoopay.records import record_of

# The processor of a customer's row made before any processor made the customer (dunning marks
# delinquent a customer the processor refused); its processor_customer_id is the customer's id,
# unique as the index on the two asks. The first processor to make the customer replaces both,
# as after a change of processor (`ensure_processor_customer`).
NO_PROCESSOR = ""


@dataclass(frozen=True)
class Address:
    country: str
    state: str | None = None
    city: str | None = None
    street1: str | None = None
    street2: str | None = None
    zip: str | None = None


@dataclass(frozen=True)
class BillingDetails:
    """What Zoo's BillingInfo carries."""

    name: str | None = None
    phone: str = ""
    address: Address | None = None


@dataclass(frozen=True)
class PaymentCustomer:
    """A customer as the processor knows them, with their billing information."""

    customer: Customer
    processor: str
    processor_customer_id: str
    details: BillingDetails
    vat_id: str | None
    # When billing information was given (POST), None before and after DELETE.
    billing_info_at: datetime | None
    delinquent: bool
    created_at: datetime
    updated_at: datetime


def _payment_customer(values: Mapping[Any, Any]) -> PaymentCustomer:
    return record_of(
        PaymentCustomer,
        values,
        customer=Customer(values["customer_kind"], values["customer_id"]),
        details=_billing_details(values),
    )


def _billing_details(values: Mapping[Any, Any]) -> BillingDetails:
    """The billing details a row of `payment_customers` holds (`_billing_columns`)."""
    address = None
    if values["address_country"] is not None:
        address = Address(
            country=values["address_country"],
            state=values["address_state"],
            city=values["address_city"],
            street1=values["address_street1"],
            street2=values["address_street2"],
            zip=values["address_zip"],
        )
    return BillingDetails(name=values["name"], phone=values["phone"], address=address)


def _billing_columns(details: BillingDetails) -> dict[str, object]:
    """The columns of `payment_customers` that hold billing details: those of no details
    (`BillingDetails()`) are what deleting billing information leaves."""
    address = details.address
    return {
        "name": details.name,
        "phone": details.phone,
        "address_country": address.country if address else None,
        "address_state": address.state if address else None,
        "address_city": address.city if address else None,
        "address_street1": address.street1 if address else None,
        "address_street2": address.street2 if address else None,
        "address_zip": address.zip if address else None,
    }


async def find_payment_customer(
    conn: AsyncConnection, *, customer: Customer
) -> PaymentCustomer | None:
    row = (
        (
            await conn.execute(
                select(payment_customers).where(payment_customers.c.customer_id == customer.id)
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _payment_customer(row)


async def customer_contact(conn: AsyncConnection, *, customer: Customer) -> tuple[str, str | None]:
    """The email address and name the processor knows a customer by: a user's own, an org's
    billing email and name."""
    if customer.kind == "user":
        query = select(users.c.email, users.c.name).where(users.c.id == customer.id)
    else:
        query = select(orgs.c.billing_email, orgs.c.name).where(orgs.c.id == customer.id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no {customer.kind} {customer.id}")
    return str(row[0]), row[1]


async def ensure_processor_customer(
    engine: AsyncEngine, *, processor: PaymentProcessor, customer: Customer, now: datetime
) -> str:
    """The customer's id at the processor, creating the processor customer on first need.

    Call it holding no write transaction (see the module's docstring). Two first calls at once
    may both create one at the processor; the first recorded wins and the other stays unused
    there, as with Stripe, never charged."""
    async with reading(engine) as conn:
        found = await find_payment_customer(conn, customer=customer)
        if found is not None and found.processor == processor.name:
            return found.processor_customer_id
        email, name = await customer_contact(conn, customer=customer)
    request = _customer_request(customer, email, name)
    created = await processor.create_customer(
        email=request.email, name=request.name, metadata=request.metadata
    )
    async with transaction(engine) as conn:
        if found is not None:
            # The processor was changed (ZOOPAY_PROCESSOR): the customer starts anew there.
            await conn.execute(
                update(payment_customers)
                .where(
                    payment_customers.c.customer_id == customer.id,
                    payment_customers.c.processor == found.processor,
                )
                .values(processor=processor.name, processor_customer_id=created, updated_at=now)
            )
        else:
            await insert_unless_present(
                conn,
                payment_customers,
                _payment_customer_row(customer, processor.name, created, now),
            )
        recorded = await find_payment_customer(conn, customer=customer)
    assert recorded is not None
    return recorded.processor_customer_id


@dataclass(frozen=True)
class Contact:
    """Who an invoice is addressed to: the email and name the processor knows, the billing
    name if one was given, and the billing country (the tax's)."""

    email: str | None = None
    name: str | None = None
    country: str | None = None


# An invoice addressed to no one by name and to no country (so untaxed).
NO_CONTACT = Contact()


_PROCESSOR_IDS = select(
    payment_customers.c.customer_id,
    payment_customers.c.processor,
    payment_customers.c.processor_customer_id,
).order_by(payment_customers.c.customer_id)


async def ensure_processor_customers(
    engine: AsyncEngine,
    *,
    processor: PaymentProcessor,
    customers: Sequence[Customer],
    now: datetime,
) -> dict[Customer, CustomerResult]:
    """`ensure_processor_customer` for many, set-based: one read for those who have one (the
    many), one processor batch (`create_customers`) and one insert for those who have none.
    Answers each customer's id, or what kept them from having one: the processor's refusal (a
    customer with no email to bill is refused here, `no_billing_email`) or its lost answer.
    Every id made is recorded, so a rerun makes only the rest."""
    async with reading(engine) as conn:
        rows = await select_where_one_of(
            conn, _PROCESSOR_IDS, payment_customers.c.customer_id, sorted(c.id for c in customers)
        )
        recorded = {row["customer_id"]: row for row in rows}
        new = sorted({c for c in customers if c.id not in recorded}, key=lambda c: c.id)
        contacts = await billing_contacts(conn, customers=new)
    found: dict[Customer, CustomerResult] = {
        c: recorded[c.id]["processor_customer_id"]
        for c in customers
        if c.id in recorded and recorded[c.id]["processor"] == processor.name
    }
    # Moved from another processor (ZOOPAY_PROCESSOR changed): rare, one at a time.
    for customer in {c for c in customers if c.id in recorded and c not in found}:
        try:
            found[customer] = await ensure_processor_customer(
                engine, processor=processor, customer=customer, now=now
            )
        except (ProcessorError, ProcessorUnavailable) as exc:
            found[customer] = exc
    found |= await _create_processor_customers(engine, processor, contacts, now=now)
    return found


async def _create_processor_customers(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    contacts: dict[Customer, Contact],
    *,
    now: datetime,
) -> dict[Customer, CustomerResult]:
    """A processor customer for each of `contacts` (customers who have none), recorded; where
    a concurrent call recorded one first, that one (the new one stays unused, never charged)."""
    answers: dict[Customer, CustomerResult] = {}
    requests: dict[Customer, CustomerRequest] = {}
    for customer, contact in contacts.items():
        if contact.email is None:
            answers[customer] = ProcessorError(
                "no_billing_email", f"{customer.kind} {customer.id} has no email to bill"
            )
        else:
            requests[customer] = _customer_request(customer, contact.email, contact.name)
    if not requests:
        return answers
    made = await processor.create_customers(list(requests.values()))
    answers |= dict(zip(requests, made, strict=True))
    created = {c: answer for c, answer in answers.items() if isinstance(answer, str)}
    async with transaction(engine) as conn:
        await insert_new(
            conn,
            payment_customers,
            [
                _payment_customer_row(c, processor.name, answer, now)
                for c, answer in created.items()
            ],
        )
        rows = await select_by(
            conn, _PROCESSOR_IDS, payment_customers.c.customer_id, sorted(c.id for c in created)
        )
    return answers | {c: rows[c.id]["processor_customer_id"] for c in created}


def _customer_request(customer: Customer, email: str, name: str | None) -> CustomerRequest:
    """What the processor is told of a new customer: who, and which of zoopay's it is."""
    metadata = {"zoopay_customer_kind": customer.kind, "zoopay_customer_id": customer.id}
    return CustomerRequest(email=email, name=name, metadata=metadata)


def _payment_customer_row(
    customer: Customer, processor: str, processor_customer_id: str, now: datetime
) -> dict[str, object]:
    return {
        "customer_id": customer.id,
        "customer_kind": customer.kind,
        "processor": processor,
        "processor_customer_id": processor_customer_id,
        "phone": "",
        "delinquent": False,
        "created_at": now,
        "updated_at": now,
    }


_USER_CONTACTS = select(users.c.id, users.c.email, users.c.name).order_by(users.c.id)
_ORG_CONTACTS = select(orgs.c.id, orgs.c.billing_email.label("email"), orgs.c.name).order_by(
    orgs.c.id
)
_BILLING_CONTACTS = select(
    payment_customers.c.customer_id, payment_customers.c.name, payment_customers.c.address_country
).order_by(payment_customers.c.customer_id)


async def billing_contacts(
    conn: AsyncConnection, *, customers: Sequence[Customer]
) -> dict[Customer, Contact]:
    """Each customer's contact as a credit purchase's invoice names it (`customer_contact`,
    then the billing information's name and country), in three statements for all."""
    user_ids = sorted(c.id for c in customers if c.kind == "user")
    org_ids = sorted(c.id for c in customers if c.kind == "org")
    own = {
        row["id"]: row
        for query, column, ids in (
            (_USER_CONTACTS, users.c.id, user_ids),
            (_ORG_CONTACTS, orgs.c.id, org_ids),
        )
        for row in await select_where_one_of(conn, query, column, ids)
    }
    billing = await select_by(
        conn, _BILLING_CONTACTS, payment_customers.c.customer_id, sorted(c.id for c in customers)
    )
    contacts = {}
    for customer in customers:
        account, info = own.get(customer.id), billing.get(customer.id)
        contacts[customer] = Contact(
            email=str(account["email"]) if account else None,
            name=(info["name"] if info else None) or (account["name"] if account else None),
            country=info["address_country"] if info else None,
        )
    return contacts


async def insert_unless_present(
    conn: AsyncConnection, table: Table, values: dict[str, object]
) -> bool:
    """Insert a row unless one with its key exists (a concurrent writer's): whether it did."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(values).on_conflict_do_nothing()
    result = await conn.execute(statement)
    return bool(result.rowcount)


async def processor_customer_id(conn: AsyncConnection, *, customer: Customer) -> str | None:
    """The customer's id at the processor, if they have one yet (a read: see
    `ensure_processor_customer` to make one)."""
    found = await find_payment_customer(conn, customer=customer)
    return None if found is None or found.processor == NO_PROCESSOR else found.processor_customer_id


# -- billing information


async def save_billing_info(
    conn: AsyncConnection,
    *,
    customer: Customer,
    details: BillingDetails,
    creating: bool,
    now: datetime,
) -> PaymentCustomer:
    """POST (`creating`: 409 if there is billing information already) or PUT (404 if there is
    none) the customer's billing information, whole. The processor customer must exist
    (`ensure_processor_customer`)."""
    found = await lock_payment_customer(conn, customer=customer)
    if found is None:
        raise NotFound("no billing information yet: POST it first")
    if creating and found.billing_info_at is not None:
        raise Conflict("billing information exists already: PUT to change it")
    if not creating and found.billing_info_at is None:
        raise NotFound("no billing information yet: POST it first")
    await conn.execute(
        update(payment_customers)
        .where(payment_customers.c.customer_id == customer.id)
        .values(
            **_billing_columns(details),
            billing_info_at=found.billing_info_at or now,
            updated_at=now,
        )
    )
    return replace(
        found, details=details, billing_info_at=found.billing_info_at or now, updated_at=now
    )


async def lock_payment_customer(
    conn: AsyncConnection, *, customer: Customer
) -> PaymentCustomer | None:
    """The customer's row, locked until the transaction ends (None: not at the processor yet)."""
    row = (
        (
            await conn.execute(
                select(payment_customers)
                .where(payment_customers.c.customer_id == customer.id)
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _payment_customer(row)


async def billing_info(conn: AsyncConnection, *, customer: Customer) -> PaymentCustomer:
    """The customer's billing information; 404 before it was given or after it was deleted."""
    found = await find_payment_customer(conn, customer=customer)
    if found is None or found.billing_info_at is None:
        raise NotFound("no billing information yet: POST it first")
    return found


async def set_vat_id(
    conn: AsyncConnection, *, customer: Customer, vat_id: str | None, now: datetime
) -> PaymentCustomer:
    """Record (or, with None, forget) the customer's EU VAT id, already validated."""
    found = await lock_payment_customer(conn, customer=customer)
    if found is None or found.billing_info_at is None:
        raise NotFound("no billing information yet: POST it first")
    await conn.execute(
        update(payment_customers)
        .where(payment_customers.c.customer_id == customer.id)
        .values(vat_id=vat_id, updated_at=now)
    )
    return replace(found, vat_id=vat_id, updated_at=now)


async def set_delinquent(
    conn: AsyncConnection, *, customer: Customer, delinquent: bool, now: datetime
) -> None:
    """Dunning's mark: the customer's money is overdue (shown as Customer.delinquent). A
    customer the processor never made (it refused them on every try) is marked all the same,
    in a row that names no processor yet (`NO_PROCESSOR`)."""
    if delinquent:
        await insert_unless_present(
            conn, payment_customers, _payment_customer_row(customer, NO_PROCESSOR, customer.id, now)
        )
    await conn.execute(
        update(payment_customers)
        .where(payment_customers.c.customer_id == customer.id)
        .values(delinquent=delinquent, updated_at=now)
    )


async def why_not_deletable(conn: AsyncConnection, *, customer: Customer) -> str | None:
    """Why the customer's billing information may not be deleted now, or None if it may.

    The one place the rule lives: money due now, and invoices still to be paid."""
    due = (
        await conn.execute(
            select(balances.c.total_due_micros).where(balances.c.customer_id == customer.id)
        )
    ).scalar_one_or_none()
    if due:
        return "money is due: pay what is owed before deleting the billing information"
    invoice = await unpaid_invoice(conn, customer=customer)
    if invoice is not None:
        return f"invoice {invoice} is unpaid: pay it before deleting the billing information"
    return None


async def unpaid_invoice(conn: AsyncConnection, *, customer: Customer) -> str | None:
    """The number (or id) of an invoice the customer still has to pay, if any: open, or given
    up on by dunning and still payable (invoicing.service.CHARGEABLE). A plan fee or a purchase
    is owed without being in total_due."""
    unpaid = (
        select(invoices.c.id, invoices.c.number)
        .where(invoices.c.customer_id == customer.id)
        .where(invoices.c.status.in_(("open", "uncollectible")))
        .limit(1)
    )
    row = (await conn.execute(unpaid)).first()
    return None if row is None else str(row.number or row.id)


async def customer_deletable(conn: AsyncConnection, *, customer: Customer) -> bool:
    return await why_not_deletable(conn, customer=customer) is None


async def forget_billing_info(conn: AsyncConnection, *, customer: Customer, now: datetime) -> None:
    """DELETE: the billing information goes (409 while money is due); the processor customer
    stays mapped, so that its charges can still be reconciled."""
    found = await lock_payment_customer(conn, customer=customer)
    if found is None or found.billing_info_at is None:
        raise NotFound("no billing information yet: POST it first")
    reason = await why_not_deletable(conn, customer=customer)
    if reason is not None:
        raise Conflict(reason)
    await conn.execute(
        update(payment_customers)
        .where(payment_customers.c.customer_id == customer.id)
        .values(
            **_billing_columns(BillingDetails()), vat_id=None, billing_info_at=None, updated_at=now
        )
    )
