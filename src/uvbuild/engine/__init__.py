"""The host side: buildah's command lines, the one subprocess module, network settings."""
