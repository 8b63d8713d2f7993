#!/usr/bin/env bash
# Install (or upgrade) zonectl in the cluster of kubectl's current context, in an order that never
# blocks pod creation:
#
#   1. the webhook's TLS Secret zonectl-webhook-tls: cert-manager issues it when its CRDs exist
#      (components/cert-manager), otherwise openssl makes a private CA and a serving certificate for the
#      webhook Service's DNS names (kept on re-runs while valid for 90 more days);
#   2. everything except the webhook configurations (kubectl apply -k manifests/, plus the options);
#   3. wait until the controller Deployment is Ready: its replicas serve the webhooks;
#   4. the webhook configurations (manifests/webhooks/), with caBundle = the CA of that Secret.
#
# The pod webhook has failurePolicy Fail, so it may only exist once something answers it. If step 3
# times out, step 4 is skipped: pods are still admitted (without zones), and the script says where to
# look. Needs kubectl (with kustomize) and, without cert-manager, openssl.
#
#   manifests/install.sh [--tls auto|openssl|cert-manager] [--config FILE] [--nb ADDRESS]
#                        [--gateway-sysctl] [--timeout SECONDS]
#
#   --tls             who issues the webhook certificate (default auto: cert-manager if installed)
#   --config FILE     the zonectl configuration (zonectl.yaml) instead of the one in config.yaml
#   --nb ADDRESS      only set ovn.nb, e.g. tcp:[fd00:10:96::6641]:6641 (manifests/kind/install.sh)
#   --gateway-sysctl  add the privileged init container that turns on forwarding on gateway nodes
#                     (components/gateway-sysctl; docs/gateway.md)
#   --timeout         seconds to wait for the controller (default 300)
#   KUBECTL=...       the kubectl to use (default: kubectl)
#
# Images: the `images:` of manifests/kustomization.yaml (localhost/... as built by kind/install.sh).
# A changed configuration restarts the controller and the gateway (they read it at start).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd -P)
KUBECTL=${KUBECTL:-kubectl}
NS=zonectl-system
SECRET=zonectl-webhook-tls
SERVICE=zonectl-webhook
TLS=auto CONFIG="" NB="" SYSCTL=0 TIMEOUT=300

say() { echo "install.sh: $*" >&2; }
die() { say "$*"; exit 1; }
k() { "$KUBECTL" "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --tls) TLS=${2:?--tls needs auto, openssl or cert-manager}; shift 2 ;;
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --nb) NB=${2:?--nb needs an address}; shift 2 ;;
    --gateway-sysctl) SYSCTL=1; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
    *) say "unknown argument: $1 (see --help)"; exit 2 ;;
  esac
done
case $TLS in auto|openssl|cert-manager) ;; *) say "--tls must be auto, openssl or cert-manager"; exit 2 ;; esac
[ -z "$CONFIG" ] || [ -r "$CONFIG" ] || die "--config $CONFIG: cannot read it"
command -v "$KUBECTL" >/dev/null || die "$KUBECTL is required"

tmp=$(cd "$(mktemp -d)" && pwd -P)
trap 'rm -rf "$tmp"' EXIT
# kustomize refuses absolute paths (and overlays inside their base): reach manifests/ from $tmp/NAME
# as ../../(up to /)/path/to/manifests
up=""; d=$tmp; while [ "$d" != / ]; do up="../$up"; d=$(dirname "$d"); done
base_rel=../${up%/}$here

if [ "$TLS" = auto ]; then
  if k get crd certificates.cert-manager.io >/dev/null 2>&1; then TLS=cert-manager; else TLS=openssl; fi
fi
[ "$TLS" = cert-manager ] || command -v openssl >/dev/null || die "openssl is required (or install cert-manager)"
say "webhook certificate: $TLS"

# overlay NAME BASE: a kustomization over BASE (a directory under manifests/) with this run's options
overlay() {
  local dir=$tmp/$1 base=$2 comps=""
  mkdir -p "$dir"
  [ "$TLS" = cert-manager ] && comps="$base_rel/components/cert-manager"
  [ "$SYSCTL" = 1 ] && [ "$base" = . ] && comps="${comps:+$comps, }$base_rel/components/gateway-sysctl"
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources: [$base_rel/$base]"
    echo "components: [$comps]"
    if [ -n "$CONFIG" ] && [ "$base" = . ]; then
      cp "$CONFIG" "$dir/zonectl.yaml"
      echo "configMapGenerator:"
      echo "  - {name: zonectl-config, namespace: $NS, behavior: replace, files: [zonectl.yaml], options: {disableNameSuffixHash: true}}"
    fi
  } > "$dir/kustomization.yaml"
  k kustomize "$dir"
}

b64() { openssl base64 -A; }          # portable (GNU and BSD base64 disagree on flags)
unb64() { openssl base64 -d -A; }

# apply_webhooks CABUNDLE: the webhook configurations, each clientConfig with caBundle added
apply_webhooks() {
  overlay webhooks webhooks > "$tmp/webhooks.yaml"
  awk -v ca="$1" '{ print } /^ *clientConfig:$/ { match($0, /^ */); print substr($0, 1, RLENGTH) "  caBundle: " ca }' \
    "$tmp/webhooks.yaml" > "$tmp/webhooks-ca.yaml"
  [ "$(grep -c 'caBundle: ' "$tmp/webhooks-ca.yaml")" = "$(grep -c 'clientConfig:' "$tmp/webhooks.yaml")" ] \
    || die "could not add caBundle to every webhook in manifests/webhooks (unexpected kustomize output)"
  k apply -f "$tmp/webhooks-ca.yaml"
}

k apply -f "$here/namespace.yaml"

# --- 1. the webhook's TLS Secret ------------------------------------------------------------------
rotated=0
if [ "$TLS" = openssl ]; then
  secret_field() { k -n "$NS" get secret "$SECRET" -o "jsonpath={.data.$1}" 2>/dev/null | unb64; }
  secret_field 'tls\.crt' > "$tmp/old.crt" || true
  secret_field 'ca\.crt' > "$tmp/old-ca.crt" || true
  if [ -s "$tmp/old.crt" ] && [ -s "$tmp/old-ca.crt" ] \
      && openssl x509 -checkend $((90 * 86400)) -noout -in "$tmp/old.crt" >/dev/null 2>&1 \
      && openssl verify -CAfile "$tmp/old-ca.crt" "$tmp/old.crt" >/dev/null 2>&1; then
    say "keeping Secret $NS/$SECRET (valid for 90 more days)"
    cp "$tmp/old-ca.crt" "$tmp/ca.crt"
  else
    # A private CA, trusted only through these webhooks' caBundle, and a serving certificate for the
    # names the API server uses to reach the Service. Long-lived on purpose: an expired certificate
    # would stop pod creation; re-running this script renews it 90 days before (or use cert-manager).
    # The CA key is not kept anywhere: a renewal makes a new CA (trusted next to the old one, below).
    svc=$SERVICE.$NS.svc
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=zonectl-webhook-ca" \
      -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$svc" -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,DNS:%s.cluster.local\nextendedKeyUsage=serverAuth\n' "$svc" "$svc" > "$tmp/ext"
    openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial -days 1825 \
      -extfile "$tmp/ext" -out "$tmp/tls.crt" 2>/dev/null
    if [ -s "$tmp/old-ca.crt" ] && k get mutatingwebhookconfiguration zonectl >/dev/null 2>&1; then
      # Renewal with the webhooks in place: trust the old and the new CA until every replica has
      # reloaded the new certificate (kopf watches the files), so no review fails in between.
      rotated=1
      apply_webhooks "$(cat "$tmp/old-ca.crt" "$tmp/ca.crt" | b64)"
    fi
    k -n "$NS" create secret generic "$SECRET" --type=kubernetes.io/tls --from-file=tls.crt="$tmp/tls.crt" \
      --from-file=tls.key="$tmp/tls.key" --from-file=ca.crt="$tmp/ca.crt" --dry-run=client -o yaml | k apply -f -
    say "made Secret $NS/$SECRET (CA valid 10 years, certificate 5 years)"
  fi
fi

# --- 2. everything but the webhook configurations --------------------------------------------------
overlay main . > "$tmp/main.yaml"
if [ -n "$NB" ]; then
  [ "$(grep -cE '^ +nb: ' "$tmp/main.yaml")" = 1 ] || die "--nb: expected one 'nb:' line in the configuration"
  sed -i.orig -E "s|^( +)nb: .*$|\1nb: $NB|" "$tmp/main.yaml"
fi
if ! k apply -f "$tmp/main.yaml" > "$tmp/applied" 2> "$tmp/apply.err"; then
  # A custom resource right after its new CRD (ClusterKopfPeering, cert-manager's objects are older):
  # kubectl maps every object before applying, so apply again once the CRDs are Established.
  grep -q "ensure CRDs are installed first" "$tmp/apply.err" || { cat "$tmp/apply.err" >&2; die "kubectl apply failed"; }
  k wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=zonectl >/dev/null
  k apply -f "$tmp/main.yaml" > "$tmp/applied"
fi
cat "$tmp/applied"
if grep -q "^configmap/zonectl-config configured" "$tmp/applied"; then
  say "configuration changed: restarting the controller and the gateway"
  k -n "$NS" rollout restart deployment/zonectl-controller daemonset/zonectl-gateway
fi

# --- 3. the controller must answer before the webhooks exist ---------------------------------------
if [ "$TLS" = cert-manager ]; then
  k -n "$NS" wait --for=condition=Ready --timeout=120s certificate/zonectl-webhook \
    || die "cert-manager has not issued certificate $NS/zonectl-webhook (kubectl -n $NS describe certificate zonectl-webhook); webhooks NOT installed"
fi
if ! k -n "$NS" rollout status deployment/zonectl-controller --timeout="${TIMEOUT}s"; then
  say "the controller is not Ready, so the webhook configurations were NOT installed: pods are still"
  say "admitted, without zone hints. Look at: kubectl -n $NS get pods; kubectl -n $NS logs deploy/zonectl-controller"
  say "(a configuration error is printed there with its field path), then run this script again."
  exit 1
fi

# --- 4. the webhook configurations, trusting the CA of the Secret the controller serves -------------
if [ "$TLS" = cert-manager ]; then
  # the CA injector keeps caBundle current from here on; setting it now leaves no window without one
  k -n "$NS" get secret "$SECRET" -o 'jsonpath={.data.ca\.crt}' | unb64 > "$tmp/ca.crt"
  [ -s "$tmp/ca.crt" ] || die "Secret $NS/$SECRET has no ca.crt; webhooks NOT installed"
fi
if [ "$rotated" = 1 ]; then
  bundle=$(cat "$tmp/old-ca.crt" "$tmp/ca.crt" | b64)   # the next run drops the old CA
else
  bundle=$(b64 < "$tmp/ca.crt")
fi
apply_webhooks "$bundle"

k -n "$NS" rollout status daemonset/zonectl-gateway --timeout=60s \
  || say "the gateway DaemonSet is not ready (is a node labelled zonectl.io/gateway=true? docs/gateway.md)"
say "zonectl is installed. If the controller is ever down for long, pods in webhook-covered namespaces"
say "cannot be created; recovery: kubectl delete mutatingwebhookconfiguration zonectl (then re-run this)."
