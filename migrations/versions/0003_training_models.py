"""training and models: cancel a run, its last checkpoint; model activations (roll back); a batch's parent
(re-run with another model version, to compare); each version's parameter count

Revision ID: 0003_training_models
Revises: 0002_studies
Create Date: 2026-12-01 10:43:01.355218
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_training_models'
down_revision = '0002_studies'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_activation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('previous_version_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_version.id'], ),
    sa.ForeignKeyConstraint(['previous_version_id'], ['model_version.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model_activation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_activation_model_version_id'), ['model_version_id'], unique=False)

    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_batch_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_batch_parent_batch_id'), ['parent_batch_id'], unique=False)
        batch_op.create_foreign_key('fk_batch_parent_batch_id', 'batch', ['parent_batch_id'], ['id'])

    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parameters', sa.Integer(), nullable=True))

    with op.batch_alter_table('training_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('checkpoint_epoch', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('training_run', schema=None) as batch_op:
        batch_op.drop_column('checkpoint_epoch')
        batch_op.drop_column('cancel_requested')

    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.drop_column('parameters')

    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_constraint('fk_batch_parent_batch_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_batch_parent_batch_id'))
        batch_op.drop_column('parent_batch_id')

    with op.batch_alter_table('model_activation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_activation_model_version_id'))

    op.drop_table('model_activation')
