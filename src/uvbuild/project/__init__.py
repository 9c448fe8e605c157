"""The uv project: pyproject.toml, uv.lock and whether it is current, sources, Python."""
