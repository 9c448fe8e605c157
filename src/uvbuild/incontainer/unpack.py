# Run by the builder's Python. Unpacks uvbuild's tar of project files (sorted, owned
# by 0:0, stamped with the build time; made by uvbuild.tarball) into a folder of the
# build container: what `buildah add` would do, without a buildah call of its own.
# Usage: python unpack.py ARCHIVE DEST [DEST...]
import sys
import tarfile

# The archive is uvbuild's own: extract it as it is (Python 3.14 would filter it).
options = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
for dest in sys.argv[2:]:
    with tarfile.open(sys.argv[1]) as tar:
        tar.extractall(dest, numeric_owner=True, **options)
