# Certificates and kubeconfigs for the local cluster, made with openssl. Sourced.
# shellcheck shell=bash

# issue NAME SUBJECT [SAN]: a key and a certificate signed by the cluster CA.
issue() {
  local name=$1 subj=$2 san=${3:-} ext
  [ -f "$PKI/$name.crt" ] && return 0
  ext=$(mktemp)
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } > "$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" \
    -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$ext" "$PKI/$name.csr"
}

# kubeconfig FILE USER-CERT-NAME CONTEXT: a kubeconfig with embedded credentials.
kubeconfig() {
  local file=$1 cert=$2 context=$3
  [ -f "$file" ] && return 0
  cat > "$file" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: simdev-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 < "$PKI/$cert.key")
contexts:
- name: $context
  context:
    cluster: simdev-local
    user: $cert
current-context: $context
KCFG
  chmod 600 "$file"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -days 3650 -subj "/CN=simdev-local-ca" \
      -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  fi
  issue apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue admin "/O=system:masters/CN=simdev-admin"
  issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  issue controller-manager "/CN=system:kube-controller-manager"
  issue scheduler "/CN=system:kube-scheduler"
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  kubeconfig "$ADMIN_KUBECONFIG" admin simdev-local
  kubeconfig "$SIMDEV_STATE/controller-manager.kubeconfig" controller-manager simdev-local
  kubeconfig "$SIMDEV_STATE/scheduler.kubeconfig" scheduler simdev-local
}

# node_pki: the credentials of the node chosen by use_node; the Node authorizer and
# NodeRestriction let each kubelet touch only its own Node and pods.
node_pki() {
  mkdir -p "$NODE_STATE"
  issue "$KUBELET_CERT" "/O=system:nodes/CN=system:node:$NODE_NAME"
  kubeconfig "$NODE_STATE/kubelet.kubeconfig" "$KUBELET_CERT" simdev-local
}
