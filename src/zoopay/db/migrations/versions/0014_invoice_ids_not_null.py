"""invoice ids NOT NULL on SQLite too, as the tables declare them

0007 declared the ids of the invoice tables nullable. PostgreSQL keeps a primary key NOT NULL
regardless; SQLite, for a primary key that is not an INTEGER, took it at its word, so a row with
a NULL id could be written there. Batch mode rebuilds each table on SQLite (env.py turns foreign
keys off around it, so that dropping the old `invoices` cascades to nothing) and is a no-op
`SET NOT NULL` on PostgreSQL.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"

# With foreign keys off the order does not matter; this is the order 0007 created them in.
_TABLES = ("invoices", "invoice_lines", "invoice_payment_attempts", "invoice_refunds")


def _ids_nullable(nullable: bool) -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column("id", existing_type=sa.String(36), nullable=nullable)


def upgrade() -> None:
    _ids_nullable(False)


def downgrade() -> None:
    # PostgreSQL refuses NULL in a primary key column whatever 0007 said: nothing to undo there.
    if op.get_bind().dialect.name == "sqlite":
        _ids_nullable(True)
