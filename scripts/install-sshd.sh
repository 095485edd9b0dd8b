#!/bin/sh
# Installs Debian's OpenSSH server for the remote-team tests (tests/remote_ssh.rs), which start
# their own sshd on a loopback port (the system's service is never started or enabled).
# Idempotent: does nothing when /usr/sbin/sshd is there. Needs root (the CI runs as root).
set -eu
if [ -x /usr/sbin/sshd ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-sshd.sh: /usr/sbin/sshd is missing and this is not root; install openssh-server (apt-get install openssh-server)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the package's post-install from starting the system's sshd.
policy=/usr/sbin/policy-rc.d
made_policy=no
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=yes
fi
apt_install() {
    apt-get install -y -q --no-install-recommends openssh-server >/dev/null
}
if ! apt_install; then
    apt-get update -q >/dev/null
    apt_install
fi
if [ "$made_policy" = yes ]; then
    rm -f "$policy"
fi
test -x /usr/sbin/sshd
