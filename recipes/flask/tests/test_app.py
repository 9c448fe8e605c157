"""Runs on the developer's machine (`uv run pytest`); .containerignore keeps it out of the image."""

from app import app


def test_index_renders_template() -> None:
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert b"Hello from an unpackaged Flask app" in response.data


def test_health() -> None:
    assert app.test_client().get("/health").get_json() == {"status": "ok"}
