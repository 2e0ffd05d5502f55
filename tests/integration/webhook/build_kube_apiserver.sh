#!/bin/sh
# Produce a kube-apiserver 1.20 binary for the admission-webhook tests at $1 (default build/k8s/kube-apiserver).
#
# No package registry ships a kube-apiserver binary; Debian bookworm ships the source (package `kubernetes`,
# 1.20.5+really1.20.2-1.1+deb12u1). In order of preference:
#   1. $INFERTAP_KUBE_APISERVER_GZ, or the shared prebuilt file ../shared/tools/kube-apiserver-v1.20.2-linux-amd64.gz
#      (a build of that same source package), gunzipped;
#   2. a build from Debian's source package with Debian's Go (about 10 minutes on 2 cores; needs root for apt-get).
# The reflect2 1.0.2 swap in step 4 is required: the vendored 1.0.1 makes Go 1.19 crash the server on the first Pod
# create ("fatal error: fault" in reflect2 mapiterinit).
set -eu

out="${1:-build/k8s/kube-apiserver}"
if [ -x "$out" ]; then
    exit 0
fi
mkdir -p "$(dirname "$out")"
here="$(cd "$(dirname "$0")" && pwd)"
shared="${INFERTAP_KUBE_APISERVER_GZ:-$here/../../../../shared/tools/kube-apiserver-v1.20.2-linux-amd64.gz}"

if [ -f "$shared" ]; then
    echo "kube-apiserver: using the prebuilt $shared"
    gunzip -c "$shared" >"$out.tmp"
    chmod +x "$out.tmp"
    mv "$out.tmp" "$out"
    exit 0
fi

echo "kube-apiserver: building from Debian's source package (about 10 minutes)"
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd="sudo"
fi
# a deb-src entry for bookworm, on the mirror of the machine's existing deb entry (one-line or deb822 format)
if ! grep -rqsE '^deb-src .* bookworm |^Types:.*deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror="$(grep -rhsE '^deb .* bookworm ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | head -n 1 | awk '{print $2}')"
    if [ -z "$mirror" ]; then
        mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | grep -v security | head -n 1 | awk '{print $2}')"
    fi
    mirror="${mirror:-http://deb.debian.org/debian}"
    printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: %s\n' \
        "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg |
        $sudo_cmd tee /etc/apt/sources.list.d/infertap-bookworm-src.sources >/dev/null
fi
$sudo_cmd apt-get -o DPkg::Lock::Timeout=300 update -qq
$sudo_cmd apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends golang-go dpkg-dev rsync jq \
    golang-github-modern-go-reflect2-dev make

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(
    cd "$work"
    apt-get source --download-only kubernetes
    dpkg-source -x kubernetes_*.dsc k8s
    rm -rf k8s/vendor/github.com/modern-go/reflect2
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 k8s/vendor/github.com/modern-go/reflect2
    cd k8s
    make WHAT=cmd/kube-apiserver
)
cp "$work/k8s/_output/local/bin/linux/amd64/kube-apiserver" "$out.tmp"
chmod +x "$out.tmp"
mv "$out.tmp" "$out"
echo "kube-apiserver: built $out"
