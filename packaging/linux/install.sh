#!/bin/sh
# Installs SmolChat for this user: the app folder in ~/.local/opt/SmolChat, the `smolchat`
# command in ~/.local/bin, and a menu entry with its icon.
#   ./install.sh              install (again, to update)
#   ./install.sh --uninstall  remove the app; conversations, settings and models stay
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
app="$HOME/.local/opt/SmolChat"
bin="$HOME/.local/bin"

refresh() {
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -rf "$app" "$bin/smolchat" "$data/applications/smolchat.desktop"
    rm -f "$data"/icons/hicolor/*/apps/smolchat.png "$data/icons/hicolor/scalable/apps/smolchat.svg"
    refresh
    echo "SmolChat removed. Conversations, settings and downloaded models were kept."
    exit 0
fi

rm -rf "$app.new" && mkdir -p "$(dirname "$app")"
cp -a "$here/SmolChat" "$app.new"
rm -rf "$app" && mv "$app.new" "$app"
mkdir -p "$bin" && ln -sf "$app/SmolChat" "$bin/smolchat"
for png in "$here"/icons/smolchat-*.png; do
    size="${png##*-}"; size="${size%.png}"
    mkdir -p "$data/icons/hicolor/${size}x${size}/apps"
    cp "$png" "$data/icons/hicolor/${size}x${size}/apps/smolchat.png"
done
mkdir -p "$data/icons/hicolor/scalable/apps" "$data/applications"
cp "$here/smolchat.svg" "$data/icons/hicolor/scalable/apps/smolchat.svg"
sed "s|^Exec=.*|Exec=\"$app/SmolChat\"|" "$here/smolchat.desktop" > "$data/applications/smolchat.desktop"
refresh
echo "SmolChat installed: find it in your applications menu, or run $bin/smolchat"
