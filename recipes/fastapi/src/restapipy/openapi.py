"""`restapipy-openapi PATH`: write the service's OpenAPI document as JSON.

The recipe runs this in the builder so the document ships in the image without
the runtime ever having to generate it.
"""

import json
import sys
from pathlib import Path

from restapipy.app import app


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: restapipy-openapi OUTPUT.json", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.write_text(json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
