"""Initial schema: volumes and migrations.

Revision ID: 79f1e18a8f60
Revises:
Create Date: 2026-11-25 18:12:08
"""

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '79f1e18a8f60'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'volumes',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('display_name', sa.String(length=255), nullable=True),
        sa.Column('size_gib', sa.Integer(), nullable=False),
        sa.Column('backend', sa.String(length=255), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('migration_status', sa.String(length=32), nullable=True),
        sa.Column('previous_status', sa.String(length=32), nullable=True),
        sa.Column('hidden', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_volumes')),
        sa.UniqueConstraint('backend', 'name',
                            name=op.f('uq_volumes_backend_name')),
    )
    op.create_table(
        'migrations',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('volume_id', sa.String(length=36), nullable=False),
        sa.Column('dest_volume_id', sa.String(length=36), nullable=True),
        sa.Column('source_backend', sa.String(length=255), nullable=False),
        sa.Column('dest_backend', sa.String(length=255), nullable=False),
        sa.Column('path', sa.String(length=16), nullable=True),
        sa.Column('method', sa.String(length=32), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('bytes_done', sa.BigInteger(), nullable=False),
        sa.Column('bytes_total', sa.BigInteger(), nullable=True),
        sa.Column('rate', sa.Float(), nullable=True),
        sa.Column('eta', sa.Float(), nullable=True),
        sa.Column('checkpoint_offset', sa.BigInteger(), nullable=True),
        sa.Column('checkpoint_chunk_size', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['dest_volume_id'], ['volumes.id'], ondelete='SET NULL',
            name=op.f('fk_migrations_dest_volume_id_volumes')),
        sa.ForeignKeyConstraint(
            ['volume_id'], ['volumes.id'], ondelete='CASCADE',
            name=op.f('fk_migrations_volume_id_volumes')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_migrations')),
    )
    op.create_index(op.f('ix_migrations_volume_id'), 'migrations',
                    ['volume_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_migrations_volume_id'), table_name='migrations')
    op.drop_table('migrations')
    op.drop_table('volumes')
