"""studies: MOS studies, their conditions, images, stimuli, raters, trials and scores

Revision ID: 0002_studies
Revises: 0001
Create Date: 2026-12-01 10:44:26
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_studies'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('study',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('n_images', sa.Integer(), nullable=False),
    sa.Column('share_token', sa.String(length=64), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind in ('acr', 'triplet')", name='ck_study_kind'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('share_token')
    )
    op.create_table('study_rater',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('name_key', sa.String(length=100), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'name_key', name='uq_study_rater_name')
    )
    op.create_table('study_condition',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=True),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_version.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'position', name='uq_study_condition_position')
    )
    op.create_table('study_image',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('image_job_id', sa.Integer(), nullable=False),
    sa.Column('dropped', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['image_job_id'], ['image_job.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'position', name='uq_study_image_position')
    )
    op.create_table('study_stimulus',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('study_image_id', sa.Integer(), nullable=False),
    sa.Column('condition_id', sa.Integer(), nullable=True),
    sa.Column('gold', sa.String(length=10), nullable=True),
    sa.Column('image_job_id', sa.Integer(), nullable=False),
    sa.Column('file_kind', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['condition_id'], ['study_condition.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_job_id'], ['image_job.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_image_id'], ['study_image.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('study_stimulus', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_stimulus_study_id'), ['study_id'], unique=False)

    op.create_table('study_trial',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('rater_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('stimulus_id', sa.Integer(), nullable=False),
    sa.Column('is_repeat', sa.Boolean(), nullable=False),
    sa.Column('token', sa.String(length=32), nullable=False),
    sa.Column('shown_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['rater_id'], ['study_rater.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stimulus_id'], ['study_stimulus.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rater_id', 'position', name='uq_study_trial_rater_position'),
    sa.UniqueConstraint('token')
    )
    with op.batch_alter_table('study_trial', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_trial_study_id'), ['study_id'], unique=False)

    op.create_table('study_score',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('criterion', sa.String(length=20), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.CheckConstraint('score >= 1 AND score <= 5', name='ck_study_score_range'),
    sa.ForeignKeyConstraint(['trial_id'], ['study_trial.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('trial_id', 'criterion', name='uq_study_score_trial_criterion')
    )


def downgrade() -> None:
    op.drop_table('study_score')
    with op.batch_alter_table('study_trial', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_trial_study_id'))

    op.drop_table('study_trial')
    with op.batch_alter_table('study_stimulus', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_stimulus_study_id'))

    op.drop_table('study_stimulus')
    op.drop_table('study_image')
    op.drop_table('study_condition')
    op.drop_table('study_rater')
    op.drop_table('study')
