#!/usr/bin/env bash
# Fetch Debian's nodejs-doc (Node.js 18 API reference, Markdown) into bench/corpora/nodejs-18-api/.
# Only the api/*.md pages are kept (the Debian package gzips most of them; they are unpacked here),
# not the generated HTML/JSON copies of the same text.
# Idempotent: does nothing if the corpus is already present. Needs only the Debian mirror.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$HERE/corpora/nodejs-18-api"
PKG="nodejs-doc"
# The version the question set was written against; any 18.x build carries the same pages
# give or take a security fix, so another version is used with a warning.
WANT="18.20.4+dfsg-1~deb12u3"

count_files() { find "$DEST" -type f | wc -l; }

if [ -d "$DEST" ] && [ -f "$DEST/fs.md" ]; then
    echo "corpus already present: $DEST"
    echo "files: $(count_files)"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"

# apt-get download fetches as the _apt user when run as root; let it write here.
chmod 755 "$TMP"
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$TMP"; fi
fetch() { apt-get download "$PKG=$WANT" 2>/dev/null || apt-get download "$PKG"; }
if ! fetch; then
    echo "download failed; running apt-get update and retrying" >&2
    apt-get update
    fetch
fi

DEB="$(ls "$TMP"/${PKG}_*.deb | head -n1)"
case "$(basename "$DEB")" in
    *"_${WANT}_"*) ;;
    *) echo "warning: got $(basename "$DEB"), the questions were written against $WANT" >&2 ;;
esac
mkdir -p "$TMP/x"
dpkg -x "$DEB" "$TMP/x"

SRC="$TMP/x/usr/share/doc/nodejs/api"
if [ ! -d "$SRC" ]; then
    echo "could not find usr/share/doc/nodejs/api inside $DEB" >&2
    exit 1
fi

rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
# -L: the package may ship some pages as symlinks; copy their contents.
find -L "$SRC" -maxdepth 1 -type f -name '*.md' -exec cp -L {} "$DEST.partial/" \;
find -L "$SRC" -maxdepth 1 -type f -name '*.md.gz' | while read -r gz; do
    gzip -dc "$gz" >"$DEST.partial/$(basename "$gz" .gz)"
done
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"

echo "corpus: $DEST (from $(basename "$DEB"))"
echo "files: $(count_files)"
