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

# shellcheck source=bench/debian_package.sh
. "$HERE/debian_package.sh"
unpack_debian_package "$PKG" "$WANT"

SRC="$UNPACKED/usr/share/doc/nodejs/api"
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
