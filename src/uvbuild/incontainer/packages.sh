# Install OS packages with whatever package manager the image has; leave no caches or logs.
# Usage: sh -c "$(cat packages.sh)" packages PKG...
set -eu
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@"
    apt-get clean
    # Logs and indexes hold build times and mirror state: they would make two builds differ.
    rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
        /var/cache/ldconfig/aux-cache /var/cache/debconf/*-old /var/lib/dpkg/*-old
elif command -v apk >/dev/null 2>&1; then
    apk add --no-cache "$@"
elif command -v dnf >/dev/null 2>&1; then
    dnf install -y --setopt=install_weak_deps=False "$@"
    dnf clean all
    rm -rf /var/log/dnf* /var/cache/dnf
elif command -v microdnf >/dev/null 2>&1; then
    microdnf install -y "$@"
    microdnf clean all
else
    # Said by a value line (builder_steps.NO_PACKAGE_MANAGER), not by the exit status:
    # package managers' own statuses overlap any we could pick (apt-get fails with 100,
    # apk with its count of errors), and a misspelled package must show their message.
    echo "@@uvbuild value no_package_manager true"
    echo "uvbuild: this image has no package manager uvbuild knows (apt-get, apk, dnf, microdnf)" >&2
    exit 1
fi
