"""The FastAPI application: a health check and a read-only item endpoint."""

from fastapi import FastAPI

from restapipy import __version__

app = FastAPI(title="restapipy", version=__version__)


@app.get("/health")
def health() -> dict[str, str]:
    """Liveness probe used by the image's verify script."""
    return {"status": "ok"}


@app.get("/items/{item_id}")
def read_item(item_id: int) -> dict[str, int | str]:
    """Return a made-up item; enough to show path parameters are validated."""
    return {"id": item_id, "name": f"item-{item_id}"}
