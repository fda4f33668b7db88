"""Workers' open tasks kept as a counter (taken and given back atomically), a version for the
policy document (so engines cache policies until it changes), and an index of unsent outbox rows

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ACTIVE = ("offered", "accepted", "on_site")


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("open_tasks", sa.Integer(), nullable=False, server_default="0"))
        batch.create_check_constraint(op.f("ck_workers_open_tasks_not_negative"), "open_tasks >= 0")
    active = ", ".join(f"'{s}'" for s in ACTIVE)
    op.execute(
        "UPDATE workers SET open_tasks = (SELECT count(*) FROM tasks WHERE "
        f"tasks.worker_id = workers.id AND tasks.status IN ({active}))"
    )
    op.create_table(
        "policy_document",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_document")),
    )
    op.execute("INSERT INTO policy_document (id, version) VALUES (1, 1)")
    # The relay reads the unsent rows in id order: without this it walks every sent row kept
    # for a day before it finds one.
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["id"],
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.drop_table("policy_document")
    with op.batch_alter_table("workers") as batch:
        batch.drop_constraint(op.f("ck_workers_open_tasks_not_negative"), type_="check")
        batch.drop_column("open_tasks")
