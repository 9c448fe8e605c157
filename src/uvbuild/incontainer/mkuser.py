# Run by the runtime's Python: make the runtime user if missing (no useradd needed),
# then report uid:gid and the interpreter, as one JSON line on stdout.
# Usage: python -c "<this>" USER
# USER is a name (made with the first free id from FIRST_ID if the base has no such
# user) or a number (given a passwd entry if the base has none: tools that ask who
# they run as, `id -un`, Python's getpass, and HOME, need one).
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


def add_user(root, name, uid, gid, make_group):
    """Append `name` (uid, gid) to ROOT's passwd (and its group, if `make_group`) and
    shadow files, with a home folder it owns and no login shell."""
    etc = os.path.join(root, "etc")
    home = "/home/" + name
    shell = "/usr/sbin/nologin" if os.path.exists(root + "/usr/sbin/nologin") else "/bin/false"
    if make_group:
        append(etc + "/group", "%s:x:%d:" % (name, gid))
        if os.path.exists(etc + "/gshadow"):
            append(etc + "/gshadow", "%s:!::" % name)
    append(etc + "/passwd", "%s:x:%d:%d::%s:%s" % (name, uid, gid, home, shell))
    if os.path.exists(etc + "/shadow"):
        append(etc + "/shadow", "%s:!:::::::" % name)
    os.makedirs(root + home, mode=0o755, exist_ok=True)
    os.chown(root + home, uid, gid)


def ensure_user(user, root="/"):
    """(uid, gid) of USER in the root at `root`, made if missing (see the top)."""
    etc = os.path.join(root, "etc")
    passwd, group = read(etc + "/passwd"), read(etc + "/group")
    names = {p[0] for p in passwd} | {g[0] for g in group}
    if user == "root":
        return 0, 0
    if user.isdigit():
        uid = int(user)
        found = [p for p in passwd if len(p) > 3 and p[2] == user]
        if found:
            return uid, int(found[0][3])
        gid = uid
        # The name the recipe's default user has, unless the base has it already.
        name = "app" if "app" not in names else "user%d" % uid
        has_group = any(len(g) > 2 and g[2] == str(gid) for g in group)
        add_user(root, name, uid, gid, make_group=not has_group)
        return uid, gid
    found = [p for p in passwd if p[0] == user]
    if found:
        return int(found[0][2]), int(found[0][3])
    used_uids = {int(p[2]) for p in passwd if len(p) > 2 and p[2].isdigit()}
    used_gids = {int(g[2]) for g in group if len(g) > 2 and g[2].isdigit()}
    uid = FIRST_ID
    while uid in used_uids or uid in used_gids:
        uid += 1
    add_user(root, user, uid, uid, make_group=True)
    return uid, uid


def main(user):
    uid, gid = ensure_user(user)
    info = {
        "uid": uid,
        "gid": gid,
        "python": os.path.realpath(sys.executable),
        "version": "%d.%d" % sys.version_info[:2],
    }
    print(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1])
