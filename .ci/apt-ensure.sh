# Sourced by every script that needs Debian packages (cross/test.sh, tests/v4l2/e2e.sh,
# .ci/run). `apt_ensure WHAT PKG...` checks each named package, installs the missing ones
# without their recommends (so each list must name everything its step needs), then checks
# every package again, so a step fails here, with the package's name, rather than later in
# a link or a test.
#
# APT_ENSURE_NO_INSTALL=1 only checks (a machine where the script must not touch apt).

apt_missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -qx "install ok installed" || echo "$p"
    done
}

apt_ensure() {
    local what=$1
    shift
    local missing
    missing=$(apt_missing "$@")
    [[ -z $missing ]] && return 0
    # shellcheck disable=SC2086 # one package name per word
    if [[ -n ${APT_ENSURE_NO_INSTALL:-} ]]; then
        echo "$what: missing Debian packages:" $missing >&2
        return 1
    fi
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "$what: installing" $missing >&2
    "${sudo[@]}" apt-get update -qq >&2 || { echo "$what: apt-get update failed" >&2; return 1; }
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends $missing >&2 ||
        { echo "$what: apt-get install failed for" $missing >&2; return 1; }
    missing=$(apt_missing "$@")
    if [[ -n $missing ]]; then
        echo "$what: still missing after apt-get install:" $missing >&2
        return 1
    fi
}

# `need_files WHAT PATH...`: files a step's packages must have put in place (a compiler's
# C runtime, an emulator), so a package that no longer ships them is caught by name.
need_files() {
    local what=$1 f bad=0
    shift
    for f in "$@"; do
        # shellcheck disable=SC2086 # a path may be a glob
        compgen -G "$f" >/dev/null || { echo "$what: $f is missing" >&2; bad=1; }
    done
    return "$bad"
}
