"""MOS studies, as plain functions (no Flask): create, rate, results. The pages (``study_pages``), the API
(``study_api``) and ``sharpen study`` are thin layers over these.

To start a study from elsewhere in the dashboard (e.g. comparing two versions on a batch)::

    from dashboard.studies import StudySpec, start_study
    study_id, sent = start_study(current(), StudySpec(batch_ids=[7], model_version_ids=[2, 5], n_images=40))
"""
from __future__ import annotations

from .create import Created, StudySpec, create_study, enqueue_reruns, get_study, parse_spec, refresh_study, set_open
from .errors import StudyError

__all__ = ["Created", "StudyError", "StudySpec", "create_study", "enqueue_reruns", "get_study", "parse_spec",
           "refresh_study", "set_open", "start_study"]


def start_study(state, spec: StudySpec) -> tuple[int, bool]:
    """Create a study and send its re-runs (``state``: the dashboard's ``DashboardState``); returns (study id,
    whether the re-runs were sent now: when the queue is down they wait, queued, for the scheduler)."""
    from ..queue import QueueUnreachable

    created = create_study(state.db, spec)
    try:
        enqueue_reruns(state.db, state.queue.send, created, state.settings.chunk_size)
        return created.study_id, True
    except QueueUnreachable:
        return created.study_id, False
