"""drop the unused ``rating`` table: MOS scores live in the studies' tables (0002_studies); nothing ever wrote
to this one

Revision ID: 0004_drop_rating
Revises: 0003_training_models
Create Date: 2026-12-02 02:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_drop_rating'
down_revision = '0003_training_models'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rating_image_job_id'))
    op.drop_table('rating')


def downgrade() -> None:
    op.create_table('rating',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_job_id', sa.Integer(), nullable=False),
    sa.Column('rater', sa.String(length=200), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('score >= 1 AND score <= 5', name='ck_rating_score'),
    sa.ForeignKeyConstraint(['image_job_id'], ['image_job.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_job_id', 'rater', name='uq_rating_image_rater')
    )
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rating_image_job_id'), ['image_job_id'], unique=False)
