#!/usr/bin/env bash
# check_layers.sh - the include order of docs/design.md ("Module map"):
#   common/: base < io < text < nn < analysis < train < ps; then worker and server
#   (neither includes the other); then cli.
# Every #include "x.h" of a file in a layer must name a header of the same
# layer or a lower one.  Prints each violation; exits 1 when there is one.
# Usage: check_layers.sh [REPO_ROOT]
#        check_layers.sh --self-test   (it must refuse trees that break the order)
set -euo pipefail
if [ "${1:-}" = --self-test ]; then
  me=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
  t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
  mk() { mkdir -p "$t/$1/$(dirname "$2")"; printf '#include "%s"\n' "$3" > "$t/$1/$2"; }
  fails() { if bash "$me" "$t/$1" >/dev/null; then echo "FAIL: $2 passed"; exit 1; fi; echo "ok: refused $2"; }
  mk up common/base/a.h b.h;  mk up common/nn/b.h a.h;          fails up "base including nn"
  mk peer worker/w.h s.h;     mk peer server/s.h stdio.h;       fails peer "worker including server"
  mk cli common/ps/p.h c.h;   mk cli cli/c.h p.h;               fails cli "ps including cli"
  mk good common/nn/b.h a.h;  mk good common/base/a.h stdio.h;  mk good cli/c.h b.h
  bash "$me" "$t/good" >/dev/null || { echo "FAIL: a tree in order was refused"; exit 1; }
  echo "ok: a tree in order passes"
  exit 0
fi
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

layers=(common/base common/io common/text common/nn common/analysis common/train common/ps worker server cli)
declare -A level owner
for i in "${!layers[@]}"; do
  dir=${layers[$i]}
  [ -d "$dir" ] || continue
  for h in "$dir"/*.h; do
    [ -e "$h" ] || continue
    name=$(basename "$h")
    [ -z "${owner[$name]:-}" ] || { echo "header $name is in both ${owner[$name]} and $dir"; exit 1; }
    level[$name]=$i owner[$name]=$dir
  done
done
# worker and server are peers: give them one level, checked apart below
for i in "${!layers[@]}"; do [ "${layers[$i]}" = server ] && srv=$i; done
lv() { local l=$1; [ "$l" -eq "$srv" ] && l=$((srv - 1)); echo "$l"; }

bad=0 checked=0
for i in "${!layers[@]}"; do
  dir=${layers[$i]}
  [ -d "$dir" ] || continue
  for f in "$dir"/*.[ch]; do
    [ -e "$f" ] || continue
    while IFS= read -r inc; do
      checked=$((checked + 1))
      l=${level[$inc]:-}
      [ -n "$l" ] || continue          # generated (pslora.pb-c.h) or system
      if [ "$(lv "$l")" -gt "$(lv "$i")" ] || { [ "$l" -ne "$i" ] && [ "$(lv "$l")" -eq "$(lv "$i")" ]; }; then
        echo "$f includes $inc (${owner[$inc]}): not below $dir"
        bad=1
      fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done
done
[ "$bad" -eq 0 ] || exit 1
echo "ok: $checked includes follow ${layers[*]}"
