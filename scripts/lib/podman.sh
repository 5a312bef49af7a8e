# shellcheck shell=bash
# Sourced (not run): find a container engine and make podman/buildah work on
# this host without touching its system configuration.
#
#   source scripts/lib/podman.sh
#   engine="$(container_engine)"     # podman | buildah | docker, or empty
#   podman_env                       # exports CONTAINERS_CONF for podman/buildah/podman-compose
#
# podman_env writes a containers.conf of its own (CONTAINERS_CONF, which replaces
# the system's for the podman and buildah this shell runs, podman-compose's
# included) with what a machine without systemd, on cgroup v1 or hybrid, needs:
#   - runtime runc when installed: crun refuses hybrid cgroup hierarchies;
#   - cgroupfs and a file event log when systemd is not running;
#   - default ulimits this process may grant: podman's own defaults for root
#     (nofile and nproc far above the hard limits of a sandboxed shell) make
#     every `run` fail with "error setting rlimit". nofile is this shell's hard
#     limit; nproc also stays within kernel.pid_max, which conmon is held to.

# Prints the engine to use: podman, else buildah, else docker when its daemon
# answers (a docker client alone cannot build); empty when there is none.
container_engine() {
    if command -v podman >/dev/null 2>&1; then
        echo podman
    elif command -v buildah >/dev/null 2>&1; then
        echo buildah
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    fi
}

# Installs podman (+ runc, buildah, skopeo, CNI DNS for compose networks,
# iptables for published ports) from the distribution when missing. Needs root
# and apt-get; returns 1 (with the reason on stderr) otherwise.
install_podman() {
    local pkgs=(podman runc buildah skopeo golang-github-containernetworking-plugin-dnsname iptables)
    if command -v podman >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1 \
        && [[ -x /usr/lib/cni/dnsname || -x /usr/libexec/cni/dnsname ]]; then
        return 0
    fi
    if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "podman: not installed, and installing it needs root and apt-get (${pkgs[*]})" >&2
        return 1
    fi
    echo "podman: installing ${pkgs[*]} (apt-get)" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2; then
        apt-get update -q >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
    fi
}

podman_env() {
    local dir="${NBSERVE_CACHE:-$HOME/.cache/nbserve}/podman"
    local conf nofile nproc pid_max
    conf="$dir/containers-$(id -u).conf"
    nofile="$(ulimit -Hn)"
    nproc="$(ulimit -Hu)"
    pid_max="$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)"
    [[ "$nofile" == unlimited ]] && nofile=1048576
    if [[ "$nproc" == unlimited ]] || ((nproc > pid_max)); then nproc="$pid_max"; fi
    mkdir -p "$dir"
    {
        echo "# Written by scripts/lib/podman.sh (podman_env); regenerated on every run."
        echo "[containers]"
        echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
        echo "[engine]"
        if command -v runc >/dev/null 2>&1; then echo 'runtime = "runc"'; fi
        if [[ ! -d /run/systemd/system ]]; then
            echo 'cgroup_manager = "cgroupfs"'
            echo 'events_logger = "file"'
        fi
    } >"$conf.tmp.$$"
    mv -f "$conf.tmp.$$" "$conf"
    export CONTAINERS_CONF="$conf"
}
