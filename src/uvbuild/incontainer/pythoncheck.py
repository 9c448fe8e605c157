# Run by builder.python before `uv sync`: is this the interpreter the project asks for?
# uv is handed builder.python itself and reads no .python-version, so the project's pin
# is held to it here, where its patch version, implementation and build are known.
# Usage: python -c "<this>" WANTED
# WANTED (JSON, made by uvbuild.project.pythons): {"versions": ["3.11", "3.12.4"],
# "implementation": "cpython" or null, "free_threaded": true/false/null, "debug": bool};
# a version is a prefix of X.Y.Z ("3.11" stands for every 3.11.x).
# Reports the interpreter as `@@uvbuild value python-check {...}`; exits 3 if it does
# not meet WANTED.
import json
import sys
import sysconfig

UNMET = 3


def facts():
    return {"implementation": sys.implementation.name,
            "version": "%d.%d.%d" % sys.version_info[:3],
            "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            "debug": hasattr(sys, "gettotalrefcount")}


def meets(wanted, have):
    version = have["version"]
    if not any(version == v or version.startswith(v + ".") for v in wanted["versions"]):
        return False
    if wanted["implementation"] not in (None, have["implementation"]):
        return False
    if wanted["free_threaded"] is not None and wanted["free_threaded"] != have["free_threaded"]:
        return False
    return not wanted["debug"] or have["debug"]


def main(argv):
    wanted = json.loads(argv[1])
    have = facts()
    sys.stdout.write("@@uvbuild value python-check %s\n" % json.dumps(have, sort_keys=True))
    return 0 if meets(wanted, have) else UNMET


if __name__ == "__main__":
    sys.exit(main(sys.argv))
