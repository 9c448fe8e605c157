"""A tiny Flask app kept as plain files (not a package): `gunicorn app:app` serves it."""

import platform

from flask import Flask, render_template

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return render_template("index.html", python=platform.python_version())


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
