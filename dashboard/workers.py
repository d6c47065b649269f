"""The workers panel: who is online (host, device, what each is doing) and how long the queues are."""
from __future__ import annotations

from flask import Blueprint, render_template

from . import queries
from .context import current

bp = Blueprint("workers", __name__)


@bp.get("/workers")
def index():
    st = current()
    found = st.queue.workers()
    job_ids = [i for w in found for t in w["tasks"] for i in (t["job_ids"] or [])]
    with st.db.session() as s:
        jobs = queries.jobs_by_ids(s, job_ids)
    return render_template("workers.html", workers=found, queues=st.queue.lengths(), jobs=jobs,
                           broker=st.queue.broker_for_display())
