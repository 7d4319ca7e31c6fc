#!/usr/bin/env bash
# Builds the macOS app: dist/SmolChat.app and dist/SmolChat-<version>-macos-<arch>.zip.
#
#   packaging/build-macos.sh
#
# Needs: Python 3.11 from python.org (a framework build, with libpython), uv (pip install uv)
# and the Xcode command-line tools (xcode-select --install). Run it on the architecture it is
# for: arm64 (Apple silicon) or x86_64.
#
# On Apple silicon llama.cpp is built with Metal (llama-cpp-python turns it on for macOS, with
# its shaders embedded) and with ggml's apple_m1 / apple_m2_m3 / apple_m4 CPU levels.
# The app is signed ad hoc (it runs on the machine that built it, and elsewhere after
# right-click > Open); distributing it needs a Developer ID and notarization:
#   codesign --deep --force --options runtime --sign "Developer ID Application: ..." dist/SmolChat.app
#   xcrun notarytool submit dist/SmolChat-*.zip --keychain-profile ... --wait && xcrun stapler staple dist/SmolChat.app
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
ensure_uv
# sha256sum is GNU coreutils; macOS has shasum.
command -v sha256sum >/dev/null 2>&1 || sha256sum() { shasum -a 256 "$@"; }

build="$ROOT/build/macos"
arch="$(uname -m)"
wheel="$(portable_llama_wheel)"
build_environment "$build/venv" "$wheel"
rm -rf dist/SmolChat dist/SmolChat.app
run_pyinstaller "$build/venv"
codesign --force --deep --sign - dist/SmolChat.app

name="SmolChat-$VERSION-macos-$arch"
ditto -c -k --sequesterRsrc --keepParent dist/SmolChat.app "dist/$name.zip"
# Check it: one image question on a tiny generated model, answered in the real window.
dist/SmolChat.app/Contents/MacOS/SmolChat --self-test
echo "Built dist/SmolChat.app and dist/$name.zip"
