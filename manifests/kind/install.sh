#!/usr/bin/env bash
# An IPv6-only OVN-Kubernetes kind cluster on podman, with zonectl installed, as in the proof of concept:
#
#   sudo OVN_K_DIR=~/src/ovn-kubernetes manifests/kind/install.sh            # cluster + zonectl
#   (KIND_ARGS="..." adds kind.sh flags; KIND_CLUSTER_NAME defaults to kind.sh's "ovn")
#   sudo manifests/kind/install.sh --zonectl-only                           # zonectl into the current cluster
#   KUBECONFIG=$HOME/ovn.conf python -m pytest tests/e2e                     # the end-to-end suite
#
# OVN_K_DIR is an ovn-kubernetes checkout. Upstream OVN-Kubernetes ignores zonectl's hint annotation (and
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

# 4. The webhook's TLS: a private CA and a serving certificate for the Service's DNS names.
svc=zonectl-webhook.$NS.svc
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=zonectl-webhook-ca" \
  -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$svc" -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.cluster.local,DNS:zonectl-webhook.%s\n' "$svc" "$svc" "$NS" > "$tmp/san.ext"
openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial -days 365 \
  -extfile "$tmp/san.ext" -out "$tmp/tls.crt" 2>/dev/null
kubectl apply -f manifests/namespace.yaml
kubectl -n "$NS" create secret tls zonectl-webhook-tls --cert "$tmp/tls.crt" --key "$tmp/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f -

# 5. zonectl, pointed at OVN-Kubernetes' Northbound database (central mode: the ovnkube-db Service).
nb_ip=$(kubectl -n ovn-kubernetes get svc ovnkube-db -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
if [ -z "$nb_ip" ]; then
  echo "install.sh: no ovnkube-db Service: OVN-Kubernetes runs in interconnect mode (one NB per node)," >&2
  echo "which zonectl's single controller does not program yet (docs/operator.md)" >&2
  exit 2
fi
kubectl apply -k manifests
kubectl -n "$NS" get configmap zonectl-config -o jsonpath='{.data.zonectl\.yaml}' \
  | sed "s|^\(\s*nb:\).*|\1 tcp:[$nb_ip]:6641|" > "$tmp/zonectl.yaml"
kubectl -n "$NS" create configmap zonectl-config --from-file=zonectl.yaml="$tmp/zonectl.yaml" \
  --dry-run=client -o yaml | kubectl apply -f -
ca=$(base64 -w0 < "$tmp/ca.crt")
for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
  n=$(kubectl get "$kind" zonectl -o jsonpath='{.webhooks[*].name}' | wc -w)
  patch=$(for i in $(seq 0 $((n - 1))); do printf '{"op":"add","path":"/webhooks/%d/clientConfig/caBundle","value":"%s"},' "$i" "$ca"; done)
  kubectl patch "$kind" zonectl --type=json -p "[${patch%,}]"
done
kubectl -n "$NS" rollout restart deployment/zonectl-controller
kubectl -n "$NS" rollout status deployment/zonectl-controller --timeout=180s
kubectl -n "$NS" rollout status daemonset/zonectl-gateway --timeout=180s || true

echo "zonectl is installed. Try:"
echo "  kubectl apply -f examples/zones.yaml -f examples/policies.yaml"
echo "  kubectl get securityzones,securityzonepolicies -A"
echo "  KUBECONFIG=$KUBECONFIG python -m pytest tests/e2e"
