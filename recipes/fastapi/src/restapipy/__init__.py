"""restapipy: a small FastAPI service used as a uvbuild example."""

__version__ = "0.1.0"
