# Builds the Windows app: dist\SmolChat\SmolChat.exe (the window; smolchat-cli.exe beside it
# for the command line) and dist\SmolChat-<version>-windows-x64.zip.
#
#   powershell -ExecutionPolicy Bypass -File packaging\build-windows.ps1
#
# Needs: Python 3.11 from python.org, uv (pip install uv), and Visual Studio 2022 (or its
# Build Tools) with "Desktop development with C++" and "C++ Clang tools for Windows". Run it
# from a "Developer PowerShell for VS 2022".
#
# llama.cpp is compiled with its CPU code as one DLL per instruction-set level (ggml's
# GGML_CPU_ALL_VARIANTS) so the app uses AVX2, AVX512, VNNI, BF16 or AMX where the CPU has
# them. It is compiled with clang-cl because with MSVC ggml leaves out the BF16 and AMX
# levels (zen4, cooperlake, sapphirerapids). $env:SMOLCHAT_CMAKE_ARGS adds CMake options:
#   $env:SMOLCHAT_CMAKE_ARGS = "-DGGML_VULKAN=on"     # Vulkan SDK installed
#   $env:SMOLCHAT_CMAKE_ARGS = "-DGGML_CUDA=on"       # CUDA Toolkit installed
$ErrorActionPreference = "Stop"
$Root = Split-Path -Parent $PSScriptRoot
Set-Location $Root
$env:UV_PYTHON_DOWNLOADS = "never"

$Build = Join-Path $Root "build\windows"
$Cache = if ($env:SMOLCHAT_BUILD_CACHE) { $env:SMOLCHAT_BUILD_CACHE } else { Join-Path $env:LOCALAPPDATA "smolchat-build" }
$Version = (Select-String -Path pyproject.toml -Pattern '^version = "(.*)"$').Matches[0].Groups[1].Value
$CmakeArgs = "-T ClangCL -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DCMAKE_INSTALL_BINDIR:STRING=llama_cpp/lib"
if ($env:SMOLCHAT_CMAKE_ARGS) { $CmakeArgs = "$CmakeArgs $env:SMOLCHAT_CMAKE_ARGS" }

# 1. llama-cpp-python at the version uv.lock pins, from the source distribution it names.
$Lock = python -c @"
import tomllib
lock = tomllib.load(open('uv.lock', 'rb'))
p = next(p for p in lock['package'] if p['name'] == 'llama-cpp-python')
print(p['version'], p['sdist']['url'], p['sdist']['hash'].removeprefix('sha256:'))
"@
$LlamaVersion, $SdistUrl, $SdistSha256 = $Lock.Split(" ")
$Bytes = [Text.Encoding]::UTF8.GetBytes("$LlamaVersion`n$CmakeArgs`nx64`n")
$Key = -join ([Security.Cryptography.SHA256]::Create().ComputeHash($Bytes)[0..5] | ForEach-Object { $_.ToString("x2") })
$Wheels = Join-Path $Cache "llama-cpp-python-$LlamaVersion-$Key"
if (-not (Test-Path "$Wheels\llama_cpp_python-*.whl")) {
    New-Item -ItemType Directory -Force $Cache | Out-Null
    $Sdist = Join-Path $Cache (Split-Path -Leaf $SdistUrl)
    if (-not (Test-Path $Sdist) -or (Get-FileHash $Sdist -Algorithm SHA256).Hash -ne $SdistSha256.ToUpper()) {
        Invoke-WebRequest $SdistUrl -OutFile "$Sdist.part"
        if ((Get-FileHash "$Sdist.part" -Algorithm SHA256).Hash -ne $SdistSha256.ToUpper()) { throw "${SdistUrl}: wrong sha256" }
        Move-Item -Force "$Sdist.part" $Sdist
    }
    $env:CMAKE_ARGS = $CmakeArgs
    uv build --wheel --out-dir "$Wheels.part" $Sdist
    if ($LASTEXITCODE) { throw "llama-cpp-python did not build" }
    Remove-Item -Recurse -Force $Wheels -ErrorAction SilentlyContinue
    Move-Item "$Wheels.part" $Wheels
}
$LlamaWheel = (Get-ChildItem "$Wheels\llama_cpp_python-*.whl")[0].FullName

# 2. What uv.lock pins for the app, the openvino extra and the packaging group.
Remove-Item -Recurse -Force "$Build\venv" -ErrorAction SilentlyContinue
uv venv --python 3.11 "$Build\venv"
uv export --frozen --no-hashes --no-dev --extra openvino --group packaging --no-emit-project `
    --no-emit-package llama-cpp-python --output-file "$Build\requirements.txt"
$env:VIRTUAL_ENV = "$Build\venv"
uv pip install -r "$Build\requirements.txt"
uv pip install --no-deps $LlamaWheel .
if ($LASTEXITCODE) { throw "the build environment could not be installed" }

# 3. The app folder, and a zip of it.
Remove-Item -Recurse -Force dist\SmolChat -ErrorAction SilentlyContinue
& "$Build\venv\Scripts\pyinstaller.exe" --noconfirm --log-level WARN --distpath dist --workpath "$Build\pyinstaller" packaging\smolchat.spec
if ($LASTEXITCODE) { throw "PyInstaller failed" }
Compress-Archive -Force -Path dist\SmolChat -DestinationPath "dist\SmolChat-$Version-windows-x64.zip"

# 4. Check it: one image question on a tiny generated model, answered in the real window.
& dist\SmolChat\smolchat-cli.exe --self-test | Out-Host
if ($LASTEXITCODE) { throw "the built app failed its self-test" }
Write-Host "Built dist\SmolChat\SmolChat.exe and dist\SmolChat-$Version-windows-x64.zip"
