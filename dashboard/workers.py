"""The workers panel: who is online (host, device, what each is doing) and how long the queues are.

The page and ``GET /api/v1/workers`` show the same ``panel()``; the page polls that JSON to stay current."""
from __future__ import annotations

from flask import Blueprint, render_template

from . import queries
from .context import DashboardState, current

bp = Blueprint("workers", __name__)
QUEUE_OF_TASK = {"sharpen": "sharpen", "train": "train"}


def panel(st: DashboardState) -> dict:
    """Workers online with what each is doing, messages waiting per queue, and the broker.

    Workers answer Celery's inspect broadcast between tasks; one busy in a solo pool answers only when its
    task ends. Leases in the database fill the gap: a process holding one is online and doing that work."""
    found = st.queue.workers()
    with st.db.session() as s:
        held = queries.work_in_hand(s)
        job_ids = [t["job_ids"][0] for w in found for t in w["tasks"] if t["job_ids"]]
        batch_of = queries.batch_ids_of(s, job_ids)
    for w in found:
        for t in w["tasks"]:
            t["batch_id"] = batch_of.get(t["job_ids"][0]) if t["job_ids"] else None
        mine = [held.pop(f"{w['host']}:{pid}") for pid in [w["pid"], *(w.get("processes") or [])]
                if f"{w['host']}:{pid}" in held]
        w["busy"] = bool(w["tasks"] or mine)
        w["tasks"] = w["tasks"] or mine
    for name, task in sorted(held.items()):  # busy, so not answering: known from its lease
        host, _, pid = name.rpartition(":")
        found.append({"name": name, "host": host, "pid": int(pid) if pid.isdigit() else None, "pool": None,
                      "concurrency": None, "queues": [QUEUE_OF_TASK[task["name"]]], "device": None,
                      "processes": None, "busy": True, "tasks": [task]})
    return {"workers": found, "queues": st.queue.lengths(), "broker": st.queue.broker_for_display()}


@bp.get("/workers")
def index():
    st = current()
    # Each refresh asks every worker (a broadcast that waits its timeout): slower than a batch page's polling.
    return render_template("workers.html", refresh_ms=5 * st.config.poll_ms, **panel(st))
