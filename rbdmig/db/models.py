"""SQLAlchemy models of the volumes and migrations tables."""

import datetime

from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy import orm


def _utcnow():
    return timeutils.utcnow()


class Base(orm.DeclarativeBase):
    """The declarative base; its ``metadata`` is what migrations build."""

    metadata = sa.MetaData(naming_convention={
        # Named constraints, so later migrations can drop or alter them on
        # every backend (SQLite's batch mode needs the names).
        'ix': 'ix_%(column_0_label)s',
        'uq': 'uq_%(table_name)s_%(column_0_N_name)s',
        'fk': 'fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s',
        'pk': 'pk_%(table_name)s',
    })


class TimestampMixin:
    """``created_at`` and ``updated_at``, naive UTC as in Cinder."""

    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, nullable=False, default=_utcnow)
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, nullable=False, default=_utcnow, onupdate=_utcnow)


class Volume(TimestampMixin, Base):
    """A volume: which backend holds it, under what name, in what status.

    The id stays when the volume moves; ``name`` and ``backend`` follow it.
    A generic migration's destination is a volume of its own, ``hidden``
    until the switch-over, so listings show one volume, not two.
    """

    __tablename__ = 'volumes'
    __table_args__ = (
        # One record per image: ``import`` cannot adopt an image twice.
        sa.UniqueConstraint('backend', 'name'),
    )

    id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False)
    display_name: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
    size_gib: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False)
    backend: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False)
    status: orm.Mapped[str] = orm.mapped_column(
        sa.String(32), nullable=False)
    migration_status: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(32), nullable=True)
    # The status a forced migration saved before ``maintenance``.
    previous_status: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(32), nullable=True)
    hidden: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean, nullable=False, default=False)
    # What its type requires of a backend (Cinder's extra specs), checked
    # against a destination's capabilities before a migration.
    extra_specs: orm.Mapped[dict | None] = orm.mapped_column(
        sa.JSON, nullable=True)

    def __repr__(self):
        return '<Volume %s %s/%s status=%s migration_status=%s>' % (
            self.id, self.backend, self.name, self.status,
            self.migration_status)


class Migration(Base):
    """One attempt to move a volume, with its progress and checkpoint.

    The checkpoint says the first ``checkpoint_offset`` bytes of the volume
    are on ``dest_volume_id``, copied in chunks of
    ``checkpoint_chunk_size``: a generic copy that died resumes there when
    it copies to the same destination with the same chunk size.
    """

    __tablename__ = 'migrations'

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True)
    # A volume's history goes with it when its record is deleted.
    volume_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), sa.ForeignKey('volumes.id', ondelete='CASCADE'),
        nullable=False, index=True)
    # The hidden destination record of a generic migration; it is deleted
    # after the switch-over or a failure, the migration record stays.
    dest_volume_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(36), sa.ForeignKey('volumes.id', ondelete='SET NULL'),
        nullable=True)
    source_backend: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False)
    dest_backend: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False)
    # 'assisted' or 'generic'; unknown until the source driver answers.
    path: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(16), nullable=True)
    # The copy method, e.g. an ``rbd_migration_method``.
    method: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(32), nullable=True)
    status: orm.Mapped[str] = orm.mapped_column(
        sa.String(32), nullable=False)
    # Which host and process runs it, e.g. ``node1:4242``.
    host: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True)
    bytes_done: orm.Mapped[int] = orm.mapped_column(
        sa.BigInteger, nullable=False, default=0)
    bytes_total: orm.Mapped[int | None] = orm.mapped_column(
        sa.BigInteger, nullable=True)
    # Bytes per second, and seconds left, as the reporter last saw them.
    rate: orm.Mapped[float | None] = orm.mapped_column(
        sa.Float, nullable=True)
    eta: orm.Mapped[float | None] = orm.mapped_column(
        sa.Float, nullable=True)
    checkpoint_offset: orm.Mapped[int | None] = orm.mapped_column(
        sa.BigInteger, nullable=True)
    checkpoint_chunk_size: orm.Mapped[int | None] = orm.mapped_column(
        sa.Integer, nullable=True)
    # Why it failed, one sentence for operators: never a secret.
    error: orm.Mapped[str | None] = orm.mapped_column(
        sa.Text, nullable=True)
    started_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, nullable=False, default=_utcnow)
    updated_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, nullable=False, default=_utcnow, onupdate=_utcnow)
    finished_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        sa.DateTime, nullable=True)

    @property
    def percent(self):
        """Return the share of bytes done, 0 to 100 (None: total unknown)."""
        if not self.bytes_total:
            return None
        return min(100.0, 100.0 * self.bytes_done / self.bytes_total)

    def __repr__(self):
        return '<Migration %s of %s %s->%s status=%s>' % (
            self.id, self.volume_id, self.source_backend, self.dest_backend,
            self.status)
