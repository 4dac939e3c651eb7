#!/usr/bin/env bash
# Fetch Debian's postgresql-doc-15 HTML manual into bench/corpora/postgresql-15/.
# Idempotent: does nothing if the corpus is already present. Needs only the Debian mirror.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$HERE/corpora/postgresql-15"
PKG="postgresql-doc-15"

count_files() { find "$DEST" -type f | wc -l; }

if [ -d "$DEST" ] && [ -f "$DEST/index.html" ]; then
    echo "corpus already present: $DEST"
    echo "files: $(count_files)"
    exit 0
fi

# shellcheck source=bench/debian_package.sh
. "$HERE/debian_package.sh"
unpack_debian_package "$PKG"

SRC="$UNPACKED/usr/share/doc/$PKG/html"
if [ ! -d "$SRC" ]; then
    SRC="$(find "$UNPACKED" -type f -name index.html -path '*html*' -printf '%h\n' | head -n1)"
fi
if [ -z "$SRC" ] || [ ! -d "$SRC" ]; then
    echo "could not find the HTML folder inside $DEB" >&2
    exit 1
fi

rm -rf "$DEST.partial"
mkdir -p "$(dirname "$DEST")"
# -L: dereference any symlinks (e.g. to shared stylesheets) so the corpus is self-contained
cp -rL "$SRC" "$DEST.partial"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"

echo "corpus: $DEST (from $(basename "$DEB"))"
echo "files: $(count_files)"
