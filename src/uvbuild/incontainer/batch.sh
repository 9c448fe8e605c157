# Run by /bin/sh in a build container: each argument is a shell command, run in order
# by /bin/sh -c; the first one that fails stops the batch with its exit status.
# One `buildah run` for several commands saves buildah's set-up and tear-down per
# command. The marker lines tell uvbuild which command printed what and which failed.
i=0
for c in "$@"; do
  echo "@@uvbuild step $i"
  echo "@@uvbuild step $i" >&2
  /bin/sh -c "$c"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "@@uvbuild failed $i $rc" >&2
    exit "$rc"
  fi
  i=$((i + 1))
done
