# Sourced by the bench/fetch_*.sh scripts: download one Debian package and unpack it.
#
#   unpack_debian_package PKG [VERSION]
#
# Works in a fresh temporary folder (removed on exit) and sets DEB (the .deb file) and UNPACKED
# (the folder it was unpacked into). With VERSION, that version is asked for first; another is
# used with a warning, since the question set was written against VERSION.

unpack_debian_package() {
    local pkg="$1" want="${2:-}"
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    # apt-get download fetches as the _apt user when run as root; let it write here.
    chmod 755 "$WORK"
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$WORK"; fi
    if ! (cd "$WORK" && _download "$pkg" "$want"); then
        echo "download failed; running apt-get update and retrying" >&2
        apt-get update
        (cd "$WORK" && _download "$pkg" "$want")
    fi
    DEB="$(ls "$WORK"/"${pkg}"_*.deb | head -n1)"
    if [ -n "$want" ]; then
        case "$(basename "$DEB")" in
            *"_${want}_"*) ;;
            *) echo "warning: got $(basename "$DEB"), the questions were written against $want" >&2 ;;
        esac
    fi
    UNPACKED="$WORK/x"
    mkdir -p "$UNPACKED"
    dpkg -x "$DEB" "$UNPACKED"
}

_download() {
    if [ -n "$2" ]; then
        apt-get download "$1=$2" 2>/dev/null || apt-get download "$1"
    else
        apt-get download "$1"
    fi
}
