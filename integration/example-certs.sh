#!/usr/bin/env bash
# Makes the EXAMPLE certificates in config/tls/ that config/mesh-tls.yaml names: a CA, a
# certificate for the incoming router (`web.mesh.test`, `*.mesh.test`, 127.0.0.1) and one for outgoing
# routers to present (`linker.mesh.test`), ECDSA P-256, valid for 100 years. They exist so the
# example loads and runs as shipped; their keys are public, so never use them for anything real.
#
#   integration/example-certs.sh [DIR]     # default config/tls
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-config/tls}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -days 36500 -subj "/CN=Switchboard example CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem 2>/dev/null
leaf() { # name san eku
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 36500 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf incoming web.mesh.test "DNS:web.mesh.test,DNS:*.mesh.test,IP:127.0.0.1" serverAuth
leaf outgoing linker.mesh.test "DNS:linker.mesh.test" clientAuth
rm -f ca.key ca.srl
echo "wrote $(pwd)/{ca.pem,incoming.pem,incoming.key,outgoing.pem,outgoing.key}"
