#!/usr/bin/env bash
# Fetch the PDF manuals of Debian's texlive-latex-recommended-doc (user guides of ~80 LaTeX
# packages: beamer, memoir, caption, listings, xcolor, fontspec, microtype, booktabs, ...)
# into bench/corpora/texlive-latex/, keeping their folders (latex/booktabs/booktabs.pdf).
# Only PDFs are kept. Left out, to keep indexing to a few minutes: lwarp.pdf (2.3 M characters
# of one niche package) and the PDFs that are nothing but typeset implementation code or symbol
# tables (*-code.pdf, listings-devel, lstdrvrs, unimath-symbols).
# Idempotent: does nothing if the corpus is already present. Needs only the Debian mirror.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$HERE/corpora/texlive-latex"
PKG="texlive-latex-recommended-doc"
# The version the question set was written against; another is used with a warning.
WANT="2022.20230122-3"
EXCLUDE=(
    latex/lwarp/lwarp.pdf
    latex/microtype/microtype-code.pdf
    latex/fontspec/fontspec-code.pdf
    latex/unicode-math/unicode-math-code.pdf
    latex/unicode-math/unimath-symbols.pdf
    latex/l3experimental/l3draw/l3draw-code.pdf
    latex/listings/listings-devel.pdf
    latex/listings/lstdrvrs.pdf
    latex/parskip/parskip-code.pdf
)

count_files() { find "$DEST" -type f | wc -l; }

if [ -d "$DEST" ] && [ -f "$DEST/latex/booktabs/booktabs.pdf" ]; then
    echo "corpus already present: $DEST"
    echo "files: $(count_files)"
    exit 0
fi

# shellcheck source=bench/debian_package.sh
. "$HERE/debian_package.sh"
unpack_debian_package "$PKG" "$WANT"

SRC="$UNPACKED/usr/share/doc/texlive-doc"
if [ ! -d "$SRC/latex" ]; then
    echo "could not find usr/share/doc/texlive-doc/latex inside $DEB" >&2
    exit 1
fi

rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
(cd "$SRC" && find -L . -type f -name '*.pdf' | sed 's|^\./||' | sort) | while read -r rel; do
    for skip in "${EXCLUDE[@]}"; do
        if [ "$rel" = "$skip" ]; then continue 2; fi
    done
    mkdir -p "$DEST.partial/$(dirname "$rel")"
    cp -L "$SRC/$rel" "$DEST.partial/$rel"
done
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"

echo "corpus: $DEST (from $(basename "$DEB"))"
echo "files: $(count_files)"
