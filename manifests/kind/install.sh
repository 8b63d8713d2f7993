#!/usr/bin/env bash
# An IPv6-only OVN-Kubernetes kind cluster on podman, with zonectl installed, as in the proof of concept:
#
#   sudo OVN_K_DIR=~/src/ovn-kubernetes manifests/kind/install.sh            # cluster + zonectl
#   (KIND_ARGS="..." adds kind.sh flags; KIND_CLUSTER_NAME defaults to kind.sh's "ovn";
#    INSTALL_ARGS="..." adds manifests/install.sh flags, e.g. --gateway-sysctl or --tls cert-manager)
#   sudo manifests/kind/install.sh --zonectl-only                           # zonectl into the current cluster
#   KUBECONFIG=$HOME/ovn.conf python -m pytest tests/e2e                     # the end-to-end suite
#
# OVN_K_DIR is an ovn-kubernetes checkout. Both OVN-K layouts work: a central Northbound (the ovnkube-db
# Service; the controller syncs it) and interconnect mode (kind.sh -ic, OVN-K's default: one NB per node;
# the controller publishes the rules and the zonectl-ovn-agent DaemonSet, manifests/ovn-agent, syncs each
# node's NB). In interconnect mode a --config of your own in INSTALL_ARGS must say ovn.mode: interconnect. Upstream OVN-Kubernetes ignores zonectl's hint annotation (and
# caps IPv6 offsets at ::ffff), so pods get addresses without their zone and zonectl reports them as
# mismatches; use a tree with the allocator patch (docs/operator.md, "allocator contract") for pods whose
# addresses carry their zone. Steps are idempotent: re-running installs the current zonectl build again.
set -euo pipefail
cd "$(dirname "$0")/../.."

ZONECTL_ONLY=0
[ "${1:-}" = "--zonectl-only" ] && ZONECTL_ONLY=1
NS=zonectl-system
IMAGE=localhost/zonectl:dev
GW_IMAGE=localhost/zonectl-gateway:dev
CLUSTER=${KIND_CLUSTER_NAME:-ovn}
export KIND_EXPERIMENTAL_PROVIDER=podman
export KUBECONFIG=${KUBECONFIG:-$HOME/ovn.conf}

need() { command -v "$1" >/dev/null || { echo "install.sh: $1 is required" >&2; exit 2; }; }
for tool in podman kind kubectl openssl; do need "$tool"; done

# 1. The cluster: OVN-Kubernetes' kind.sh, IPv6 only, SNAT handled by OVN-K (which zonectl's routed
#    design turns off), podman as the kind provider.
if [ "$ZONECTL_ONLY" = 0 ]; then
  : "${OVN_K_DIR:?set OVN_K_DIR to an ovn-kubernetes checkout (with the allocator patch for zone addresses)}"
  # shellcheck disable=SC2086  # KIND_ARGS: extra kind.sh flags, word-split on purpose
  (cd "$OVN_K_DIR/contrib" && ./kind.sh -ep podman --ipv6 --no-ipv4 --disable-snat-multiple-gws ${KIND_ARGS:-})
fi
kubectl get nodes >/dev/null

# 2. Images: built here, loaded into every kind node (no registry needed).
podman build -t "$IMAGE" .
podman build --target gateway -t "$GW_IMAGE" .
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for img in "$IMAGE" "$GW_IMAGE"; do
  podman save "$img" -o "$tmp/image.tar"
  kind load image-archive "$tmp/image.tar" --name "$CLUSTER"
done

# 3. One worker runs the NAT64 gateway.
gw_node=$(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[-1:].metadata.name}')
kubectl label node "$gw_node" zonectl.io/gateway=true --overwrite

# 4. zonectl, pointed at OVN-Kubernetes' Northbound database, installed by manifests/install.sh: TLS
#    Secret, everything else, wait for the controller, and only then the webhook configurations (so a
#    failed start never blocks pod creation). Central mode (the ovnkube-db Service): the controller syncs
#    that NB. Interconnect mode (no such Service: one NB per node): ovn.mode interconnect in the config,
#    and the zonectl-ovn-agent DaemonSet syncs every node's own NB from the rules the controller publishes.
nb_ip=$(kubectl -n ovn-kubernetes get svc ovnkube-db -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
agent=()
if [ -n "$nb_ip" ]; then
  ovn_args=(--nb "tcp:[$nb_ip]:6641")
else
  echo "install.sh: no ovnkube-db Service: OVN-Kubernetes runs in interconnect mode (one NB per node);"
  echo "install.sh: ovn.mode interconnect, plus the zonectl-ovn-agent DaemonSet (manifests/ovn-agent)"
  # The shipped configuration (manifests/config.yaml) with its `nb:` line turned into `mode: interconnect`.
  awk '/^  zonectl.yaml: [|]/ {on = 1; next} on && /^    / {print substr($0, 5); next} on && /^ *$/ {print ""; next} on {exit}' \
    manifests/config.yaml | sed 's|^\( *\)nb:.*|\1mode: interconnect|' > "$tmp/zonectl.yaml"
  grep -q '^ *mode: interconnect$' "$tmp/zonectl.yaml" || { echo "install.sh: no ovn.nb line to replace" >&2; exit 2; }
  ovn_args=(--config "$tmp/zonectl.yaml")
  agent=(daemonset/zonectl-ovn-agent)
fi
upgrade=$(kubectl -n "$NS" get deployment zonectl-controller -o name 2>/dev/null || true)
# shellcheck disable=SC2086  # INSTALL_ARGS: extra flags, word-split on purpose
manifests/install.sh "${ovn_args[@]}" ${INSTALL_ARGS:-}
if [ -z "$nb_ip" ]; then
  kubectl apply -k manifests/ovn-agent
  # The host directory of the nodes' NB socket: OVN-K's own manifests keep it in /var/run/openvswitch (the
  # DaemonSet's default); other builds in /var/run/ovn. kind nodes are podman containers named as the node.
  node=$(kubectl get nodes -o jsonpath='{.items[0].metadata.name}')
  if ! podman exec "$node" test -S /var/run/openvswitch/ovnnb_db.sock \
      && podman exec "$node" test -S /var/run/ovn/ovnnb_db.sock; then
    kubectl -n "$NS" patch daemonset zonectl-ovn-agent \
      -p '{"spec":{"template":{"spec":{"volumes":[{"name":"ovn-run","hostPath":{"path":"/var/run/ovn"}}]}}}}'
  fi
  [ -n "$upgrade" ] || kubectl -n "$NS" rollout status daemonset/zonectl-ovn-agent --timeout=180s
fi
if [ -n "$upgrade" ]; then
  # the images were rebuilt under the same tags: restart to run them (maxUnavailable 0 keeps the webhook up)
  kubectl -n "$NS" rollout restart deployment/zonectl-controller daemonset/zonectl-gateway ${agent[@]+"${agent[@]}"}
  kubectl -n "$NS" rollout status deployment/zonectl-controller --timeout=180s
  kubectl -n "$NS" rollout status daemonset/zonectl-gateway --timeout=180s || true
  [ ${#agent[@]} = 0 ] || kubectl -n "$NS" rollout status "${agent[@]}" --timeout=180s
fi

echo "zonectl is installed. Try:"
echo "  kubectl apply -f examples/zones.yaml -f examples/policies.yaml"
echo "  kubectl get securityzones,securityzonepolicies -A"
echo "  KUBECONFIG=$KUBECONFIG python -m pytest tests/e2e"
