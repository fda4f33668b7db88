"""Policies as data: per category and priority, verification, escalation chains; departments,
skills and department queues

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("responsible", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_departments")),
    )
    with op.batch_alter_table("categories") as batch:
        batch.add_column(sa.Column("department", sa.String(64), nullable=True))
        batch.add_column(sa.Column("skill", sa.String(64), nullable=True))
        batch.create_foreign_key(
            op.f("fk_categories_department_departments"), "departments", ["department"], ["code"]
        )
    with op.batch_alter_table("sla_policies", recreate="always") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("verify_s", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("warn_at", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("max_refusals", sa.Integer(), nullable=False, server_default="3")
        )
        batch.add_column(sa.Column("escalation", JSON, nullable=False, server_default="[]"))
        batch.drop_constraint("pk_sla_policies", type_="primary")
        batch.create_primary_key("pk_sla_policies", ["category_code", "priority"])
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("skills", JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("department", sa.String(64), nullable=True))
        batch.create_index(op.f("ix_workers_department"), ["department"])
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("department", sa.String(64), nullable=True))
        batch.create_index(op.f("ix_cases_department"), ["department"])
    with op.batch_alter_table("sla_timers") as batch:
        batch.add_column(sa.Column("step", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("action", sa.String(32), nullable=True))
        batch.add_column(sa.Column("goal_s", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sla_timers") as batch:
        batch.drop_column("goal_s")
        batch.drop_column("action")
        batch.drop_column("step")
    with op.batch_alter_table("cases") as batch:
        batch.drop_index(op.f("ix_cases_department"))
        batch.drop_column("department")
    with op.batch_alter_table("workers") as batch:
        batch.drop_index(op.f("ix_workers_department"))
        batch.drop_column("department")
        batch.drop_column("skills")
    op.execute("DELETE FROM sla_policies WHERE priority <> 0")
    with op.batch_alter_table("sla_policies", recreate="always") as batch:
        batch.drop_constraint("pk_sla_policies", type_="primary")
        batch.create_primary_key("pk_sla_policies", ["category_code"])
        for column in ("escalation", "max_refusals", "warn_at", "verify_s", "priority"):
            batch.drop_column(column)
    with op.batch_alter_table("categories") as batch:
        batch.drop_constraint(op.f("fk_categories_department_departments"), type_="foreignkey")
        batch.drop_column("skill")
        batch.drop_column("department")
    op.drop_table("departments")
