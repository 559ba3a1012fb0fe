"""Payment invariants as queries listing what breaks them (empty = ok), for asset checks."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_PAID_TWICE = sa.text(
    """
    select i.number, count(*) as payments
    from dictamesh_billing_payments p
    join dictamesh_billing_invoices i on i.id = p.invoice_id
    where p.status in ('succeeded', 'refunded')
    group by i.number having count(*) > 1
    order by i.number
    """
)

_PAID_WITHOUT_PAYMENT = sa.text(
    """
    select i.number from dictamesh_billing_invoices i
    where i.status = 'paid' and i.amount_due > 0
      and not exists (select 1 from dictamesh_billing_payments p
                      where p.invoice_id = i.id and p.status in ('succeeded', 'refunded'))
    order by i.number
    """
)


def invoices_paid_twice(conn: Connection) -> list[str]:
    """Invoices with more than one succeeded payment (Stripe or manual): a double charge."""
    return [f"{row.number}: {row.payments} payments" for row in conn.execute(_PAID_TWICE)]


def paid_invoices_without_payment(conn: Connection) -> list[str]:
    """`paid` invoices with money due but neither a succeeded nor a manual payment."""
    return list(conn.scalars(_PAID_WITHOUT_PAYMENT))
