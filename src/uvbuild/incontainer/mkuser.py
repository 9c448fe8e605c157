# Run by the runtime's Python: make the runtime user if missing (no useradd needed),
# then report uid:gid and the interpreter, as one JSON line on stdout.
# Usage: python -c "<this>" USER
import json
import os
import sys

FIRST_ID = 10001


def read(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def append(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


def main(user):
    passwd, group = read("/etc/passwd"), read("/etc/group")
    if user == "root":
        uid = gid = 0
    elif user.isdigit():
        uid = int(user)
        found = [p for p in passwd if len(p) > 3 and p[2] == user]
        gid = int(found[0][3]) if found else uid
    else:
        found = [p for p in passwd if p[0] == user]
        if found:
            uid, gid = int(found[0][2]), int(found[0][3])
        else:
            used_uids = {int(p[2]) for p in passwd if len(p) > 2 and p[2].isdigit()}
            used_gids = {int(g[2]) for g in group if len(g) > 2 and g[2].isdigit()}
            uid = FIRST_ID
            while uid in used_uids or uid in used_gids:
                uid += 1
            gid = uid
            home = "/home/" + user
            shell = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
            append("/etc/group", "%s:x:%d:" % (user, gid))
            append("/etc/passwd", "%s:x:%d:%d::%s:%s" % (user, uid, gid, home, shell))
            if os.path.exists("/etc/shadow"):
                append("/etc/shadow", "%s:!:::::::" % user)
            if os.path.exists("/etc/gshadow"):
                append("/etc/gshadow", "%s:!::" % user)
            os.makedirs(home, mode=0o755, exist_ok=True)
            os.chown(home, uid, gid)
    info = {
        "uid": uid,
        "gid": gid,
        "python": os.path.realpath(sys.executable),
        "version": "%d.%d" % sys.version_info[:2],
    }
    print(json.dumps(info))


main(sys.argv[1])
