"""Volumes carry extra specs, as Cinder's volume types do.

Revision ID: 3c5e8a91d2b7
Revises: 79f1e18a8f60
Create Date: 2026-11-25 19:45:00
"""

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '3c5e8a91d2b7'
down_revision = '79f1e18a8f60'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('volumes') as batch:
        batch.add_column(sa.Column('extra_specs', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('volumes') as batch:
        batch.drop_column('extra_specs')
