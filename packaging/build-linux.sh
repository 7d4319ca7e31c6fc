#!/usr/bin/env bash
# Builds the Linux app: dist/SmolChat/SmolChat (a folder that runs with no Python installed)
# and dist/SmolChat-<version>-linux-<arch>.tar.gz (that folder, a .desktop file, icons and
# install.sh).
#
#   packaging/build-linux.sh
#
# The first build compiles llama.cpp once per CPU level (about 15 minutes on 2 cores); the
# result is kept in $SMOLCHAT_BUILD_CACHE (default ~/.cache/smolchat-build), so later builds
# take about a minute. SMOLCHAT_CMAKE_ARGS adds CMake options, for a GPU build:
#   SMOLCHAT_CMAKE_ARGS="-DGGML_VULKAN=ON" packaging/build-linux.sh
#   SMOLCHAT_CMAKE_ARGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=75;86;89" packaging/build-linux.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
ensure_uv

build="$ROOT/build/linux"
arch="$(uname -m)"
wheel="$(portable_llama_wheel)"
name="SmolChat-$VERSION-linux-$arch"

# A bundle built from these very sources (and this llama.cpp wheel) is kept: building again
# would make the same app. The stamp covers everything that goes into it.
stamp="$( (echo "$wheel"; find smolchat packaging resources pyproject.toml uv.lock -type f \
    -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)"
if [ -x dist/SmolChat/SmolChat ] && [ -f "dist/$name.tar.gz" ] \
    && [ "$(cat dist/SmolChat/.source-stamp 2>/dev/null)" = "$stamp" ]; then
    echo "dist/SmolChat is already built from these sources"
    exit 0
fi
build_environment "$build/venv" "$wheel"
rm -rf dist/SmolChat
run_pyinstaller "$build/venv"
link_duplicate_libraries dist/SmolChat/_internal/llama_cpp/lib

# The tarball: the app folder, the desktop entry and icons, and an installer for them.
stage="$build/$name"
rm -rf "$stage" && mkdir -p "$stage"
cp -a dist/SmolChat "$stage/SmolChat"
cp -a resources/icons "$stage/icons"
cp resources/smolchat.desktop resources/smolchat.svg packaging/linux/install.sh packaging/linux/README.txt "$stage/"
tar -C "$build" -czf "dist/$name.tar.gz" "$name"
echo "$stamp" > dist/SmolChat/.source-stamp  # written last: a build cut short is never taken as done
echo "Built dist/SmolChat/SmolChat ($(du -sh dist/SmolChat | cut -f1)) and dist/$name.tar.gz ($(du -sh "dist/$name.tar.gz" | cut -f1))"
