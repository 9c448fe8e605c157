"""`python -m restapipy`: serve the app with uvicorn on 0.0.0.0:$PORT (default 9876)."""

import os

import uvicorn


def main() -> None:
    port = int(os.environ.get("PORT", "9876"))
    log_level = os.environ.get("LOG_LEVEL", "info").lower()
    uvicorn.run("restapipy.app:app", host="0.0.0.0", port=port, log_level=log_level)


if __name__ == "__main__":
    main()
