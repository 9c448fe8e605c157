"""uvbuild: daemonless container images for uv-managed Python projects."""

__version__ = "0.1.0"
