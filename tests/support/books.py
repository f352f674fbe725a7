"""What must hold of the money after anything at all, read from the whole database: for tests
that drive many steps (tests/billing/test_money_properties.py) and check the books after each.

`money_problems` answers one sentence per thing that does not add up (empty: all is well):

- the journal (`zoopay ledger verify`'s check, zoopay.journal.service.verify): every account
  equals its lines, every posting and the trial balance are zero, every bucket its entries;
- the embedded processor's own tables against the invoices: at most one succeeded charge per
  invoice; the cash it holds for an invoice (charges less refunds) is what the invoice says it
  was paid less refunded; every charge and refund is for an invoice; nothing left pending;
- the journal's customer accounts against the invoices: `receivable` is what open invoices
  leave to pay, `credits_billed` the credits of open invoices, `credits_sold` the credits
  delivered less those refunded, `processor_cash` the processor's net cash;
- credits in = credits out, per customer, from the kinds of its ledger entries (see
  `_credit_problems` for the exact equation), with each kind checked against its own source:
  purchases against paid invoices, spending against recorded calls, refunds against refunds;
- total_due: never negative, never below the usage billed and not yet paid, settled by each
  paid invoice's usage line exactly once and by exactly that amount;
- no billing period's fee or usage on two invoices that are not void.
"""

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.db.tables import (
    api_calls,
    balances,
    billing_closes,
    invoice_lines,
    invoice_payment_attempts,
    invoice_refunds,
    invoices,
    journal_accounts,
    ledger_entries,
    processor_charges,
    processor_refunds,
)
from zoopay.journal.service import verify
from zoopay.ledger.service import Reason

MICROS_PER_CENT = 10_000
_CHARGE_KEY = re.compile(r"^invoice-(?P<invoice>[0-9a-f-]{36})-attempt-(?P<attempt>\d+)$")
_REFUND_KEY = re.compile(r"^refund-(?P<invoice>[0-9a-f-]{36})-")


async def money_problems(conn: AsyncConnection) -> list[str]:
    problems = list(await verify(conn))
    books = await _Books.read(conn)
    problems += books.invoice_problems()
    problems += books.processor_problems()
    problems += books.journal_problems()
    problems += books.credit_problems()
    problems += books.total_due_problems()
    return problems


@dataclass
class _Flows:
    """One customer's ledger entries summed by what they are (micro-dollars, all >= 0 except
    staff changes, which may go either way)."""

    granted: int = 0  # monthly: each period's grant, and a plan change's top-up
    expired: int = 0  # monthly: what a period's reset or a downgrade's cap took away
    purchased: int = 0  # stable: credits bought and paid
    staff: int = 0  # monthly and stable: staff changes
    spent: int = 0  # monthly and stable: calls
    refunded: int = 0  # stable: credits taken back by refunds
    overage: int = 0  # total_due: calls beyond the credits
    settled: int = 0  # total_due: paid invoices' usage
    refund_due: int = 0  # total_due: refunded credits that had been spent
    staff_due: int = 0  # total_due: staff changes
    purchases: Counter[str] = field(default_factory=Counter)  # invoice -> credits delivered
    settlements: Counter[str] = field(default_factory=Counter)  # invoice -> due settled
    entries_per_invoice: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class _Books:
    invoices: dict[str, dict[str, Any]]
    lines: dict[str, list[dict[str, Any]]]
    balances: dict[str, dict[str, Any]]
    flows: dict[str, _Flows]
    odd_entries: list[str]
    charges: list[dict[str, Any]]
    processor_refunds: list[dict[str, Any]]
    pending: list[str]
    refunds: list[dict[str, Any]]
    accounts: dict[str, int]
    calls: dict[str, int]
    claimed_usage: dict[str, int]

    @classmethod
    async def read(cls, conn: AsyncConnection) -> "_Books":
        async def rows(query: Any) -> list[dict[str, Any]]:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

        lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in await rows(select(invoice_lines).order_by(invoice_lines.c.position)):
            lines[line["invoice_id"]].append(line)
        flows: dict[str, _Flows] = defaultdict(_Flows)
        odd: list[str] = []
        for entry in await rows(select(ledger_entries).order_by(ledger_entries.c.id)):
            _add_entry(flows[entry["customer_id"]], entry, odd)
        calls = {
            row["customer_id"]: int(row["total"])
            for row in await rows(
                select(
                    api_calls.c.customer_id, func.sum(api_calls.c.price_micros).label("total")
                ).group_by(api_calls.c.customer_id)
            )
        }
        claimed = {
            row["customer_id"]: int(row["total"])
            for row in await rows(
                select(
                    billing_closes.c.customer_id,
                    func.sum(billing_closes.c.usage_micros).label("total"),
                )
                .where(billing_closes.c.status == "claimed")
                .group_by(billing_closes.c.customer_id)
            )
        }
        pending = [
            f"charge attempt {row['idempotency_key']} is left pending"
            for row in await rows(
                select(invoice_payment_attempts).where(
                    invoice_payment_attempts.c.status == "pending"
                )
            )
        ]
        refunds = await rows(select(invoice_refunds))
        pending += [
            f"refund {row['idempotency_key']} is left pending"
            for row in refunds
            if row["status"] == "pending"
        ]
        return cls(
            invoices={row["id"]: row for row in await rows(select(invoices))},
            lines=lines,
            balances={row["customer_id"]: row for row in await rows(select(balances))},
            flows=flows,
            odd_entries=odd,
            charges=await rows(select(processor_charges)),
            processor_refunds=await rows(select(processor_refunds)),
            pending=pending,
            refunds=refunds,
            accounts={
                row["id"]: int(row["balance_micros"])
                for row in await rows(select(journal_accounts))
            },
            calls=calls,
            claimed_usage=claimed,
        )

    def total_of(self, invoice_id: str, kind: str) -> int:
        return sum(line["amount_micros"] for line in self.lines[invoice_id] if line["kind"] == kind)

    def invoice_problems(self) -> list[str]:
        problems = []
        billed: Counter[str] = Counter()
        for invoice_id, invoice in self.invoices.items():
            name = f"invoice {invoice['number']} ({invoice['status']})"
            total, paid = invoice["total_micros"], invoice["amount_paid_micros"]
            lines = sum(line["amount_micros"] for line in self.lines[invoice_id])
            if lines != invoice["subtotal_micros"] or total != lines + invoice["tax_micros"]:
                problems.append(f"{name}: lines {lines} + tax do not make the total {total}")
            if total % MICROS_PER_CENT or total < 0:
                problems.append(f"{name}: a total of {total} micro-dollars is not whole cents")
            if paid != (total if invoice["status"] == "paid" else 0):
                problems.append(f"{name}: says {paid} of {total} was paid")
            if not 0 <= invoice["amount_refunded_micros"] <= paid:
                problems.append(f"{name}: refunded {invoice['amount_refunded_micros']} of {paid}")
            if invoice["status"] != "void":
                for line in self.lines[invoice_id]:
                    # A period's fee and usage (an upgrade's reference names a moment only).
                    if (line["reference"] or "").startswith(("fee:", "usage:")):
                        billed[line["reference"]] += 1
        problems += [f"{ref} is billed by {n} invoices" for ref, n in billed.items() if n > 1]
        return problems

    def processor_problems(self) -> list[str]:
        problems = list(self.pending)
        succeeded: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for charge in self.charges:
            match = _CHARGE_KEY.match(charge["idempotency_key"])
            if match is None or match["invoice"] not in self.invoices:
                problems.append(f"charge {charge['id']} pays no invoice")
            elif charge["status"] == "succeeded":
                succeeded[match["invoice"]].append(charge)
        refunded: Counter[str] = Counter()
        for refund in self.processor_refunds:
            refunded[refund["charge_id"]] += refund["amount_cents"]
        for invoice_id, invoice in self.invoices.items():
            name = f"invoice {invoice['number']} ({invoice['status']})"
            taken = succeeded.get(invoice_id, [])
            if len(taken) > 1:
                problems.append(f"{name} was charged {len(taken)} times: {taken}")
            cash = sum(c["amount_cents"] - refunded[c["id"]] for c in taken) * MICROS_PER_CENT
            says = invoice["amount_paid_micros"] - invoice["amount_refunded_micros"]
            if invoice["total_micros"] and cash != says:
                problems.append(f"{name}: the processor holds {cash} for it, it says {says}")
            if taken and invoice["charge_id"] != taken[0]["id"]:
                problems.append(f"{name} names charge {invoice['charge_id']}, not {taken[0]}")
        for refund in self.refunds:
            match = _REFUND_KEY.match(refund["idempotency_key"])
            if match is None or match["invoice"] != refund["invoice_id"]:
                problems.append(f"refund {refund['idempotency_key']} names another invoice")
        return problems

    def journal_problems(self) -> list[str]:
        expected: Counter[str] = Counter()
        for invoice_id, invoice in self.invoices.items():
            customer = invoice["customer_id"]
            if invoice["status"] == "open":
                expected[f"receivable:{customer}"] += invoice["total_micros"]
                expected[f"credits_billed:{customer}"] -= self.total_of(invoice_id, "credits")
            if invoice["status"] == "paid":
                expected[f"credits_sold:{customer}"] -= self.total_of(invoice_id, "credits")
            expected["processor_cash"] += (
                invoice["amount_paid_micros"] - invoice["amount_refunded_micros"]
            )
        for refund in self.refunds:
            if refund["status"] == "succeeded":
                customer = self.invoices[refund["invoice_id"]]["customer_id"]
                expected[f"credits_sold:{customer}"] += refund["credits_micros"]
        cash = sum(c["amount_cents"] for c in self.charges if c["status"] == "succeeded")
        cash -= sum(r["amount_cents"] for r in self.processor_refunds)
        problems = []
        if cash * MICROS_PER_CENT != expected["processor_cash"]:
            problems.append(f"the processor holds {cash} cents, the invoices say otherwise")
        prefixes = ("receivable:", "credits_billed:", "credits_sold:", "processor_cash")
        for account in set(expected) | {a for a in self.accounts if a.startswith(prefixes)}:
            if self.accounts.get(account, 0) != expected[account]:
                problems.append(
                    f"journal account {account} holds {self.accounts.get(account, 0)},"
                    f" the invoices make it {expected[account]}"
                )
        return problems

    def credit_problems(self) -> list[str]:
        """Per customer, from its ledger entries by reason (see `_add_entry` for which is which):

            granted + purchased + staff == spent + held + refunded + expired

        where held = monthly + stable now. Then each kind against its own source: `purchased`
        (credit_purchase entries) is the credits lines of the customer's paid invoices, one
        entry per invoice; `spent` + `overage` (api_call entries) is the price of its recorded
        calls; `refunded` + `refund_due` (refund entries) is the credits part of its refunds."""
        problems = list(self.odd_entries)
        delivered: Counter[str] = Counter()
        refunded: Counter[str] = Counter()
        for invoice_id, invoice in self.invoices.items():
            credits = self.total_of(invoice_id, "credits")
            if invoice["status"] == "paid" and credits:
                delivered[invoice["customer_id"]] += credits
        for refund in self.refunds:
            if refund["status"] == "succeeded":
                refunded[self.invoices[refund["invoice_id"]]["customer_id"]] += refund[
                    "credits_micros"
                ]
        for customer_id, balance in self.balances.items():
            f = self.flows[customer_id]
            held = balance["monthly_micros"] + balance["stable_micros"]
            left = f.granted + f.purchased + f.staff
            right = f.spent + held + f.refunded + f.expired
            who = f"{balance['customer_kind']} {customer_id}"
            if left != right:
                problems.append(f"{who}: credits in {left} != out {right} ({f})")
            if f.purchased != delivered[customer_id]:
                problems.append(
                    f"{who}: {f.purchased} credits bought, paid invoices sold"
                    f" {delivered[customer_id]}"
                )
            for invoice_id, amount in f.purchases.items():
                invoice = self.invoices.get(invoice_id)
                if (
                    invoice is None
                    or invoice["status"] != "paid"
                    or invoice["customer_id"] != (customer_id)
                ):
                    problems.append(f"{who}: credits delivered for invoice {invoice_id}")
                elif amount != self.total_of(invoice_id, "credits"):
                    problems.append(f"{who}: invoice {invoice['number']} delivered {amount}")
            if f.spent + f.overage != self.calls.get(customer_id, 0):
                problems.append(
                    f"{who}: calls cost {self.calls.get(customer_id, 0)}, the ledger drew"
                    f" {f.spent} from credits and {f.overage} into total_due"
                )
            if f.refunded + f.refund_due != refunded[customer_id]:
                problems.append(
                    f"{who}: refunds took back {refunded[customer_id]} credits, the ledger"
                    f" {f.refunded} from stable and {f.refund_due} into total_due"
                )
            problems += [
                f"{who}: {reason} entered {n} times for invoice {invoice_id}"
                for (reason, invoice_id), n in f.entries_per_invoice.items()
                if n > 1
            ]
        return problems

    def total_due_problems(self) -> list[str]:
        problems = []
        unpaid: Counter[str] = Counter(self.claimed_usage)
        for invoice_id, invoice in self.invoices.items():
            customer = invoice["customer_id"]
            usage = self.total_of(invoice_id, "usage")
            settled = self.flows[customer].settlements.get(invoice_id, 0)
            if invoice["status"] in ("open", "uncollectible"):
                unpaid[customer] += usage
            expected = usage if invoice["status"] == "paid" else 0
            if settled != expected:
                problems.append(
                    f"invoice {invoice['number']} ({invoice['status']}) has {usage} of usage,"
                    f" it settled {settled} of total_due"
                )
        for customer_id, balance in self.balances.items():
            due = balance["total_due_micros"]
            who = f"{balance['customer_kind']} {customer_id}"
            for bucket in ("monthly_micros", "stable_micros", "total_due_micros"):
                if balance[bucket] < 0:
                    problems.append(f"{who}: {bucket} is {balance[bucket]}")
            if due < unpaid[customer_id]:
                problems.append(f"{who}: owes {due}, billed and unpaid {unpaid[customer_id]}")
        return problems


_MONTHLY_RESETS = {Reason.GRANT.value, Reason.REFRESH.value}


def _add_entry(f: _Flows, entry: dict[str, Any], odd: list[str]) -> None:
    """Which flow a ledger entry is: by bucket and reason. A grant or refresh sets the monthly
    bucket to the period's grant: it expires what was left (its balance before) and grants its
    balance after. A plan change tops the bucket up (a grant) or caps it (an expiry)."""
    bucket, reason, delta = entry["bucket"], entry["reason"], int(entry["delta_micros"])
    after, reference = int(entry["balance_after_micros"]), entry["reference"]
    if reason == Reason.STAFF_CHANGE.value:
        if bucket == "total_due":
            f.staff_due += delta
        else:
            f.staff += delta
    elif (bucket, reason) == ("monthly", Reason.PLAN_CHANGE.value):
        f.granted += max(delta, 0)
        f.expired += max(-delta, 0)
    elif bucket == "monthly" and reason in _MONTHLY_RESETS:
        f.granted += after
        f.expired += after - delta
    elif reason == Reason.API_CALL.value and bucket in ("monthly", "stable") and delta <= 0:
        f.spent -= delta
    elif (bucket, reason) == ("total_due", Reason.API_CALL.value) and delta >= 0:
        f.overage += delta
    elif (bucket, reason) == ("stable", Reason.CREDIT_PURCHASE.value) and delta > 0:
        f.purchased += delta
        f.purchases[reference] += delta
        f.entries_per_invoice[(reason, reference)] += 1
    elif (bucket, reason) == ("stable", Reason.REFUND.value) and delta < 0:
        f.refunded -= delta
    elif (bucket, reason) == ("total_due", Reason.REFUND.value) and delta > 0:
        f.refund_due += delta
    elif (bucket, reason) == ("total_due", Reason.INVOICE_PAID.value) and delta < 0:
        f.settled -= delta
        f.settlements[reference] -= delta
        f.entries_per_invoice[(reason, reference)] += 1
    else:
        odd.append(f"ledger entry {entry['id']}: {reason} moves {bucket} by {delta}")
