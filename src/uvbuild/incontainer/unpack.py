# Run by the builder's Python. Unpacks uvbuild's tar of project files (sorted, owned
# by 0:0, stamped with the build time; made by uvbuild.project.archive) into a folder of the
# build container: what `buildah add` would do, without a buildah call of its own.
# Usage: python unpack.py ARCHIVE DEST[=SUBDIR] [DEST[=SUBDIR]...]
# With =SUBDIR, only the archive's SUBDIR/ goes into DEST, without that prefix (an
# unpackaged project's own folder of a larger build context).
import sys
import tarfile

# The archive is uvbuild's own: extract it as it is (Python 3.14 would filter it).
options = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
for dest in sys.argv[2:]:
    dest, _, subdir = dest.partition("=")
    with tarfile.open(sys.argv[1]) as tar:
        members = None
        if subdir:
            prefix = subdir.rstrip("/") + "/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name[len(prefix):]
        tar.extractall(dest, members=members, numeric_owner=True, **options)
