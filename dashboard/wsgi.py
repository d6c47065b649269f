"""WSGI entry point for gunicorn: ``gunicorn dashboard.wsgi:app`` (settings from the environment)."""
from dashboard import create_app

app = create_app()
