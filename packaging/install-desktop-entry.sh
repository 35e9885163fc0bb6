#!/bin/sh
# Install (or remove) Chikaku's desktop entry, AppStream metainfo and icons for the current user,
# so it shows up in the application menu like any desktop application.
#
#   packaging/install-desktop-entry.sh                  # Exec=chikaku (must be on PATH)
#   packaging/install-desktop-entry.sh --exec /opt/chikaku/chikaku   # e.g. a frozen bundle
#   packaging/install-desktop-entry.sh --uninstall
#
# Files go under ${XDG_DATA_HOME:-~/.local/share}: applications/, metainfo/ and
# icons/hicolor/<size>x<size>/apps/ (+ scalable/apps/). Works from any directory.
set -eu

APP_ID="io.github.chikaku.Chikaku"
SIZES="16 24 32 48 64 128 256 512"

HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
ROOT=$(dirname -- "$HERE")
DESKTOP_SRC="$HERE/linux/$APP_ID.desktop"
METAINFO_SRC="$HERE/linux/$APP_ID.metainfo.xml"
ICON_SRC="$ROOT/resources/icons"

DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS="$DATA/applications"
METAINFO="$DATA/metainfo"
HICOLOR="$DATA/icons/hicolor"

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "$0"
}

mode=install
exec_cmd=""
while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) mode=uninstall ;;
        --exec) [ $# -ge 2 ] || { echo "--exec needs a command" >&2; exit 2; }
                exec_cmd="$2"; shift ;;
        --exec=*) exec_cmd="${1#--exec=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

refresh_caches() {
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$APPS" || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -d "$HICOLOR" ]; then
        # -t: the user's hicolor folder usually has no index.theme of its own.
        gtk-update-icon-cache -q -f -t "$HICOLOR" || true
    fi
}

if [ "$mode" = uninstall ]; then
    rm -f "$APPS/$APP_ID.desktop" "$METAINFO/$APP_ID.metainfo.xml" \
          "$HICOLOR/scalable/apps/$APP_ID.svg"
    for size in $SIZES; do
        rm -f "$HICOLOR/${size}x${size}/apps/$APP_ID.png"
    done
    refresh_caches
    echo "removed Chikaku's desktop entry and icons from $DATA"
    exit 0
fi

for f in "$DESKTOP_SRC" "$METAINFO_SRC" "$ICON_SRC/chikaku.svg"; do
    [ -f "$f" ] || { echo "missing $f" >&2; exit 1; }
done

mkdir -p "$APPS" "$METAINFO" "$HICOLOR/scalable/apps"
if [ -n "$exec_cmd" ]; then
    # Quote the command for the Exec key (spaces, and the characters the spec reserves).
    quoted=$(printf '%s' "$exec_cmd" | sed 's/[\\"`$]/\\&/g')
    sed "s|^Exec=.*|Exec=\"$quoted\"|" "$DESKTOP_SRC" > "$APPS/$APP_ID.desktop.tmp"
else
    cp "$DESKTOP_SRC" "$APPS/$APP_ID.desktop.tmp"
    if ! command -v chikaku >/dev/null 2>&1; then
        echo "note: 'chikaku' is not on PATH; the menu entry needs it (or use --exec CMD)" >&2
    fi
fi
chmod 644 "$APPS/$APP_ID.desktop.tmp"
mv -f "$APPS/$APP_ID.desktop.tmp" "$APPS/$APP_ID.desktop"
install -m 644 "$METAINFO_SRC" "$METAINFO/$APP_ID.metainfo.xml"
install -m 644 "$ICON_SRC/chikaku.svg" "$HICOLOR/scalable/apps/$APP_ID.svg"
for size in $SIZES; do
    png="$ICON_SRC/chikaku-$size.png"
    [ -f "$png" ] || { echo "missing $png" >&2; exit 1; }
    mkdir -p "$HICOLOR/${size}x${size}/apps"
    install -m 644 "$png" "$HICOLOR/${size}x${size}/apps/$APP_ID.png"
done
refresh_caches
echo "installed Chikaku's desktop entry and icons under $DATA"
