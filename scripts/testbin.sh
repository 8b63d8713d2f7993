#!/usr/bin/env bash
# Build (once) and print the control-plane binaries the kube test layer, the lab and the benchmarks use:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and coredns, from the Go
# modules pinned in testbin/ (go.mod + go.sum committed; binaries never).
#
#   scripts/testbin.sh [NAME...]        build what is missing, then print "NAME PATH" per binary (stdout);
#                                       NAMEs (e.g. kubectl) limit it to those
#   scripts/testbin.sh pin kube|etcd|coredns VERSION
#                                       (re)write that module's go.mod/go.sum for VERSION (needs the proxy)
#   scripts/testbin.sh replaces VERSION print the replace block for k8s.io/kubernetes VERSION
#
# Binaries go to a cache outside the repo, keyed by version: ${ZONECTL_TESTBIN:-/var/cache/zonectl-testbin}
# /<component>-<version>/<component>; a present binary is reused, so a second run only prints. The four
# Kubernetes commands are built by one `go build` (they share most packages: one compile of each).
# Progress goes to stderr. Needs Go (PATH or /usr/local/go/bin) and the Go module proxy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
mods=$root/testbin
CACHE=${ZONECTL_TESTBIN:-/var/cache/zonectl-testbin}
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

say() { echo "testbin: $*" >&2; }
die() { say "$*"; exit 1; }

GO=$(command -v go || true)
[ -n "$GO" ] || [ ! -x /usr/local/go/bin/go ] || GO=/usr/local/go/bin/go
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0

need_go() { [ -n "$GO" ] || die "Go is needed to build the control plane (install Go >= 1.26: https://go.dev/dl/)"; }

# the version a module of ours requires of PATH (from its go.mod: the one place versions live)
required() { awk -v p="$2" '$1 == p { print $2; exit } $1 == "require" && $2 == p { print $3; exit }' "$mods/$1/go.mod"; }

# replaces VERSION: k8s.io/kubernetes points every staging module at ./staging; outside its repository
# each must come from the proxy at v0.<minor>.<patch>. Generated from that release's own go.mod.
replaces() {
  local ver=$1 gomod
  need_go
  gomod=$(cd / && "$GO" mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  [ -s "$gomod" ] || die "could not download k8s.io/kubernetes@$ver's go.mod"
  echo "replace ("
  awk -v v="v0.${ver#v1.}" '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }' "$gomod"
  echo ")"
}

pin() {
  local mod=$1 ver=$2 dir=$mods/$1
  need_go
  mkdir -p "$dir"
  rm -f "$dir/go.mod" "$dir/go.sum"
  local tools=()
  case $mod in
    kube) for c in "${KUBE_CMDS[@]}"; do tools+=("k8s.io/kubernetes/cmd/$c"); done
          { echo "module zonectl.io/testbin/kube"; echo; echo "go 1.26.0"; echo; replaces "$ver"; } > "$dir/go.mod"
          pkg=k8s.io/kubernetes ;;
    etcd) echo -e "module zonectl.io/testbin/etcd\n\ngo 1.26.0" > "$dir/go.mod"; pkg=go.etcd.io/etcd/server/v3; tools=("$pkg") ;;
    coredns) echo -e "module zonectl.io/testbin/coredns\n\ngo 1.26.0" > "$dir/go.mod"; pkg=github.com/coredns/coredns; tools=("$pkg") ;;
    *) die "pin: unknown module $mod (kube, etcd, coredns)" ;;
  esac
  # every tool at the exact version (a bare path would mean @latest)
  (cd "$dir" && GOFLAGS=-mod=mod "$GO" get -tool "${tools[@]/%/@$ver}" && GOFLAGS=-mod=mod "$GO" mod tidy)
  [ "$(required "$mod" "$pkg")" = "$ver" ] || die "pin: testbin/$mod/go.mod ended up with another $pkg than $ver"
  say "pinned $mod $ver in testbin/$mod"
}

# build MODULE VERSION OUT PKG...: one `go build` of PKGs into OUT (static, stripped, no local paths)
build() {
  local mod=$1 ver=$2 out=$3; shift 3
  local ldflags="-s -w"
  if [ "$mod" = kube ]; then
    local minor=${ver#v1.}; minor=${minor%%.*}
    local x
    for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $x.gitVersion=$ver -X $x.gitMajor=1 -X $x.gitMinor=$minor -X $x.gitTreeState=clean"
      ldflags+=" -X $x.buildDate=1970-01-01T00:00:00Z"
    done
  fi
  need_go
  say "building $mod $ver ($*): several minutes the first time (a line per 100 packages)"
  (cd "$mods/$mod" && "$GO" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out/" -v "$@" 2>&1 \
     | awk '{ n++; if (n % 100 == 0) { printf "testbin: %s: %d packages compiled (%s)\n", m, n, $0 > "/dev/stderr" } }' m="$mod")
  [ "${PIPESTATUS[0]}" = 0 ] || die "go build of $mod failed"
}

wanted() { [ "${#WANT[@]}" = 0 ] || [[ " ${WANT[*]} " == *" $1 "* ]]; }

ensure() {
  local mod=$1 pkgpath=$2; shift 2
  local names=() ver missing=()
  for n in "$@"; do wanted "$n" && names+=("$n"); done
  [ "${#names[@]}" -gt 0 ] || return 0
  ver=$(required "$mod" "$pkgpath")
  [ -n "$ver" ] || die "testbin/$mod/go.mod does not require $pkgpath"
  for n in "${names[@]}"; do [ -x "$CACHE/$n-$ver/$n" ] || missing+=("$n"); done
  [ "${#missing[@]}" = 0 ] || [ -z "${CHECK_ONLY:-}" ] || return 1
  if [ "${#missing[@]}" -gt 0 ]; then
    local pkgs=() tmp
    tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
    # shellcheck disable=SC2064  # expand now: $tmp is local to this function
    trap "rm -rf '$tmp'" EXIT   # an interrupted build leaves nothing half-made in the cache
    for n in "${missing[@]}"; do
      case $mod in kube) pkgs+=("k8s.io/kubernetes/cmd/$n") ;; *) pkgs+=("$pkgpath") ;; esac
    done
    start=$SECONDS
    if ! build "$mod" "$ver" "$tmp" "${pkgs[@]}"; then rm -rf "$tmp"; exit 1; fi
    for n in "${missing[@]}"; do
      local got=$tmp/$n
      # go names a binary after its package path, minus a major-version suffix: etcd's is "server"
      [ -x "$got" ] || [ "$mod" = kube ] || got=$(find "$tmp" -maxdepth 1 -type f -perm -u+x | head -n 1)
      [ -x "$got" ] || { rm -rf "$tmp"; die "go build made no $n"; }
      mkdir -p "$CACHE/$n-$ver" && mv "$got" "$CACHE/$n-$ver/$n"
    done
    rm -rf "$tmp"
    trap - EXIT
    say "built ${missing[*]} $ver in $((SECONDS - start)) s"
  fi
  for n in "${names[@]}"; do echo "$n $CACHE/$n-$ver/$n"; done
}

ALL=("${KUBE_CMDS[@]}" etcd coredns)
WANT=()
case ${1:-} in
  pin) [ $# = 3 ] || die "usage: testbin.sh pin kube|etcd|coredns VERSION"; pin "$2" "$3"; exit ;;
  replaces) [ $# = 2 ] || die "usage: testbin.sh replaces VERSION"; replaces "$2"; exit ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
esac
for a in "$@"; do
  [[ " ${ALL[*]} " == *" $a "* ]] || die "unknown binary $a (one of: ${ALL[*]}; or pin, replaces)"
  WANT+=("$a")
done

ensure_all() {
  ensure kube k8s.io/kubernetes "${KUBE_CMDS[@]}" && ensure etcd go.etcd.io/etcd/server/v3 etcd \
    && ensure coredns github.com/coredns/coredns coredns
}

# Everything asked for is cached: print it without waiting for a build of something else.
if out=$(CHECK_ONLY=1 ensure_all); then
  echo "$out"
  exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then   # one build at a time; a waiting run then finds the binaries and only prints
  say "another build of the control plane is running (scripts/test.sh starts one in the background); waiting for it"
  flock 9
fi
ensure_all
