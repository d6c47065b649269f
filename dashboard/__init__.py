"""The web dashboard. ``create_app(settings=None)`` is the Flask app factory.

For now a read-only page of batches and training runs; the dashboard issue adds submission, live
progress, ratings (MOS) and retraining.
"""
from __future__ import annotations

from flask import Flask, render_template_string
from sqlalchemy import select

from shared.config import Settings
from shared.db import Database
from shared.models import Batch, TrainingRun

PAGE = """<!doctype html><title>Sharpen</title>
<h1>Sharpen</h1>
<h2>Batches</h2>
<table border=1 cellpadding=4><tr><th>id</th><th>name</th><th>mode</th><th>status</th><th>progress</th>
<th>SSIM (input)</th></tr>
{% for b in batches %}<tr><td>{{b.id}}</td><td>{{b.name}}</td><td>{{b.mode}}</td><td>{{b.status}}</td>
<td>{{b.done_count + b.failed_count}}/{{b.total}} ({{b.failed_count}} failed)</td>
<td>{% if b.mean_ssim is not none %}{{'%.4f'|format(b.mean_ssim)}} ({{'%.4f'|format(b.mean_input_ssim)}}){% endif %}</td>
</tr>{% else %}<tr><td colspan=6>No batches yet: <code>sharpen submit FOLDER</code></td></tr>{% endfor %}
</table>
<h2>Training runs</h2>
<ul>{% for r in runs %}<li>run {{r.id}}: {{r.status}}, {{r.epochs_done}}/{{r.epochs_total}} epochs</li>
{% else %}<li>none</li>{% endfor %}</ul>
"""


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    db = Database(settings)

    @app.get("/")
    def index():
        with db.session() as s:
            batches = list(s.scalars(select(Batch).order_by(Batch.id.desc()).limit(50)))
            runs = list(s.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(20)))
        return render_template_string(PAGE, batches=batches, runs=runs)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app
