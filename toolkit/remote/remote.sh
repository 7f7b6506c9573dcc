# rtk's device side. toolkit/remote/channel.py sends this file over ssh and runs it as
#     sh -c "<this file>" rtk-remote TASK CACHE RTK ARGS...
# every argument quoted for the device's shell. TASK is probe, upload or run; CACHE is the device's rtk cache
# folder and RTK the rtk command there (both may start with ~/). Needs POSIX sh, tar, sha256sum, flock, mktemp,
# df, awk, find and wc.
#
# `watch` stops the task when the host goes away: a `read` loop on the channel's stdin (one process, reading a
# byte at a time, so it never takes data meant for tar) sends TERM to the task when stdin ends. `stop` turns
# TERM/HUP/PIPE into: stop the child, wait for its clean-up, exit 143; the EXIT trap then removes the task's
# temporary folder. The child's TERM is sent again each second until it is gone: one that reaches the child
# between its fork and its exec is taken by the trap it inherited and lost (dash: 10 stops in 300 when a stop
# follows a start at once), and the job then ran to its end; rtk ignores a repeat once it is stopping. The
# watcher itself is stopped with KILL: a TERM that reaches it before its `trap -` ran is taken by the inherited
# trap and then dropped by dash (seen under load: the upload hung in `wait`, never saying "receiving"); KILL
# cannot be lost, and the watcher has nothing to clean up. Lines starting "rtk-remote:" are for the host:
# progress, or "error <what>" (exit 100). Stdout is the task's output after the line MARK_OUT: what a device's
# shell start-up files print (a banner in ~/.bashrc) comes before it and is not read.
set -u
MARK_OUT="rtk-remote: output"
exec 3<&0
home() { case $1 in "~/"*) printf '%s/%s' "$HOME" "${1#"~/"}";; *) printf '%s' "$1";; esac; }
task=$1; cache=$(home "$2"); rtk=$(home "$3"); shift 3
case $cache in /*) ;; *) cache="$PWD/$cache";; esac
case $rtk in /*) ;; */*) rtk="$PWD/$rtk";; esac
job=; tmp=; watch=
stop() {
  trap "" HUP INT TERM PIPE
  if [ -n "$job" ]; then  # TERM again each second until the job is gone (see above)
    ( while kill -TERM "$job" 2>/dev/null; do sleep 1; done ) >/dev/null 2>&1 9>&- & resend=$!
    wait "$job"; kill -KILL "$resend" 2>/dev/null; wait "$resend"
  fi
  exit 143
}
trap stop HUP INT TERM PIPE
trap '[ -n "$tmp" ] && rm -rf "$tmp"; [ -n "$watch" ] && kill -KILL "$watch" 2>/dev/null' EXIT
fail() { echo "rtk-remote: error $*" >&2; exit 100; }
watch() {
  ( trap - HUP INT TERM PIPE EXIT; while IFS= read -r _; do :; done; kill -TERM $$ ) <&3 >/dev/null 2>&1 &
  watch=$!
}
free_kb() { df -Pk "$cache" | awk 'NR == 2 { print $4 }'; }
unwatch() { kill -KILL "$watch" 2>/dev/null; wait "$watch" 2>/dev/null; watch=; }
lock() {  # one job at a time on this device: held by this shell and its children until they exit
  exec 9>>"$cache/device.lock" || fail "cannot open $cache/device.lock"
  if ! flock -n 9; then
    echo "rtk-remote: waiting for the device lock (another job is using the device)" >&2
    flock 9 & job=$!; wait "$job" || exit 1; job=
  fi
}

# An entry (FOLDER under CACHE) is whole when its files match FOLDER.sums, the `sha256sum` list its upload kept,
# and it holds no other file: anything changed, added or removed on the device since it was copied fails this.
whole() {
  [ -d "$cache/$1" ] && [ -f "$cache/$1.sums" ] || return 1
  n=$(cd "$cache/$1" && find . -type f -exec printf '%.0s.\n' {} + | wc -l) || return 1
  [ "$n" -eq "$(wc -l < "$cache/$1.sums")" ] || return 1
  [ "$n" -eq 0 ] || (cd "$cache/$1" && sha256sum --quiet --strict -c "$cache/$1.sums") >/dev/null 2>&1
}

# ARGS: entries (folders under CACHE) to look for. Prints MARK_OUT, one 0/1 per entry (1: there and whole; 0:
# the host copies it again), a newline, then `rtk doctor --json`.
probe() {
  watch
  missing=
  for tool in tar sha256sum flock mktemp df awk find wc; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
  [ -z "$missing" ] || fail "tools$missing"
  mkdir -p "$cache/artifacts" "$cache/data" || fail "cache: cannot create $cache/artifacts (read-only or not yours?)"
  tmp=$(mktemp -d "$cache/.probe.XXXXXX") || fail "cache: cannot write in $cache (read-only or full?)"
  "$rtk" doctor --json "$tmp/doctor.json" >/dev/null 3<&- & job=$!    # in the background, so a stop reaches it
  wait "$job"; status=$?; job=
  [ "$status" -eq 0 ] || exit "$status"
  echo "$MARK_OUT"
  for f in "$@"; do if whole "$f"; then printf 1; else printf 0; fi; done
  echo
  [ ! -f "$tmp/doctor.json" ] || cat "$tmp/doctor.json"    # none: not rtk (the host says what to install)
}

# ARGS: FOLDER (under CACHE), BYTES (their total size). stdin: a tar, sent once this prints "receiving", holding
# .rtk-sums (a sha256sum list) and tree/ (an artifact with its companions, or a data folder); every file is
# checked against the list, then tree/ replaces FOLDER and the list is kept as FOLDER.sums (for `whole`). A disk
# without room for them is refused before anything is copied.
upload() {
  dir=$1; bytes=$2
  watch
  lock
  rm -rf "$cache"/artifacts/.upload.* "$cache"/.run.*    # under the lock: left by a job that died (power loss)
  free=$(free_kb)
  [ "$free" -ge "$((bytes / 1024 + 1024))" ] || fail "no space: $((bytes >> 20)) MB to copy, $((free >> 10)) MB free"
  tmp=$(mktemp -d "$cache/artifacts/.upload.XXXXXX") || exit 1
  unwatch
  echo "rtk-remote: receiving" >&2
  if ! tar -xof - -C "$tmp"; then
    [ "$(free_kb)" -ge 1024 ] || fail "no space: the disk filled up during the copy"
    fail "copy cut short"
  fi
  (cd "$tmp/tree" && { [ ! -s ../.rtk-sums ] || sha256sum --quiet --strict -c ../.rtk-sums >&2; }) || fail "damaged copy"
  # an entry there failed `whole`: it is replaced, under the lock, so no run is using it meanwhile
  mkdir -p "$cache/${dir%/*}" && rm -rf "$cache/$dir" "$cache/$dir.sums" || exit 1
  mv "$tmp/.rtk-sums" "$cache/$dir.sums" && mv "$tmp/tree" "$cache/$dir" || exit 1
}

# ARGS: K, then K entries (folders under CACHE) the run uses, then rtk's own arguments, files relative to CACHE;
# an argument rtk-remote-path:P is the device's own path P (~/ or relative to the login folder). Each entry is
# checked again under the lock (it may have changed since the probe). Prints the --json result; exits with rtk's
# code.
run() {
  watch
  k=$1; shift
  n=$#
  for a; do
    case $a in
      rtk-remote-path:*) a=$(home "${a#rtk-remote-path:}"); case $a in /*) ;; *) a="$PWD/$a";; esac;;
    esac
    set -- "$@" "$a"
  done
  shift "$n"
  cd "$cache" || exit 1
  lock
  rm -rf "$cache"/artifacts/.upload.* "$cache"/.run.*    # under the lock: left by a job that died (power loss)
  find "$cache" -maxdepth 1 -name '.probe.*' -mmin +60 -exec rm -rf {} + 2>/dev/null  # probes hold no lock: old ones
  i=0
  for e; do
    [ "$i" -lt "$k" ] || break
    whole "$e" || fail "changed: $e"
    i=$((i + 1))
  done
  shift "$k"
  tmp=$(mktemp -d "$cache/.run.XXXXXX") || exit 1
  echo "rtk-remote: started" >&2
  "$rtk" "$@" --json "$tmp/result.json" </dev/null 3<&- >&2 & job=$!
  wait "$job"; status=$?; job=
  echo "$MARK_OUT"
  [ -f "$tmp/result.json" ] && cat "$tmp/result.json"
  exit "$status"
}

case $task in
  probe|upload|run) "$task" "$@" ;;
  *) fail "unknown task $task" ;;
esac
