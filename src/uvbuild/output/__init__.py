"""What a build hands back besides the image: progress, SBOM, OCI layouts."""
