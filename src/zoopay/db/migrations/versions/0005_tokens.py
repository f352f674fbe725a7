"""tokens: labels, org service accounts, revocation; deleted users"""

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(200), nullable=True))
        batch_op.add_column(
            sa.Column(
                "org_id",
                sa.String(36),
                sa.ForeignKey("orgs.id", name="fk_api_tokens_org", ondelete="CASCADE"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("hint", sa.String(8), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE api_tokens SET updated_at = created_at")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.alter_column(
            "updated_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user_id", "created_at", "id"])
    op.create_index("ix_api_tokens_org", "api_tokens", ["org_id", "created_at", "id"])
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("deleted_at")
    op.drop_index("ix_api_tokens_org", "api_tokens")
    op.drop_index("ix_api_tokens_user", "api_tokens")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_constraint("fk_api_tokens_org", type_="foreignkey")
        for column in ("revoked_at", "updated_at", "hint", "org_id", "label"):
            batch_op.drop_column(column)
