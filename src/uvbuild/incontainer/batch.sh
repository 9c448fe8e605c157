# The end of a job's run.sh (see batch.py), run by /bin/sh in a build container: the
# commands are the files $job/0.sh ... ($n of them), each run in order by /bin/sh; the
# first one that fails stops the batch with its exit status. Files, not arguments: a
# command or value of any size, and nothing secret in any process's command line.
# One `buildah run` for several commands saves buildah's set-up and tear-down per
# command. The marker lines tell uvbuild which command printed what and which failed.
i=0
while [ "$i" -lt "$n" ]; do
  echo "@@uvbuild step $i"
  echo "@@uvbuild step $i" >&2
  /bin/sh "$job/$i.sh"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "@@uvbuild failed $i $rc" >&2
    exit "$rc"
  fi
  i=$((i + 1))
done
