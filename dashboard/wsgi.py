"""WSGI entry point for gunicorn: ``gunicorn dashboard.wsgi:app`` (settings from the environment).

Set ``SHARPEN_HOST`` to the address gunicorn binds (docker-compose does): beyond loopback the app refuses
to start without ``SHARPEN_API_TOKEN``.
"""
from dashboard import create_app

app = create_app()
