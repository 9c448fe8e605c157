"""pgcheck: report how psycopg2's C extension was built and which libpq it loads.

`pgcheck` prints one JSON line; it needs no database, only the compiled
extension and the libpq5 shared library.
"""

import json

import psycopg2
import psycopg2._psycopg  # the C extension compiled from the sdist
import psycopg2.extensions


def report() -> dict[str, object]:
    return {
        "psycopg2": psycopg2.__version__,
        # libpq the extension was compiled against (libpq-dev in the builder) ...
        "libpq_version": psycopg2.__libpq_version__,
        # ... and the one it loaded at run time (libpq5 in the runtime image).
        "libpq_runtime_version": psycopg2.extensions.libpq_version(),
        "extension": psycopg2._psycopg.__file__,
    }


def main() -> None:
    print(json.dumps(report(), sort_keys=True))
