#!/usr/bin/env bash
# Device check for a GPU machine (or any machine with a Vulkan driver): installs onnxruntime-node's CUDA provider if
# it is missing, lists the Vulkan drivers and adapters WebGPU can use, runs every layout fixture and the shipped model
# on cpu, cuda and webgpu (bench/gpu-check.ts), and prints the speed of each and how far each GPU image is from the
# cpu's (levels). Needs no network once node_modules (or .gpu-bundle/) is there. Self-contained and bounded (each
# step has a timeout; about 8 minutes at most, 3 on this repo's 2-core CI machine). Run from anywhere:
#
#   bash bench/gpu-check.sh
#
# Environment:
#   NODE=/path/to/node       node to use (default: node on PATH, else .gpu-bundle/node/bin/node, see below)
#   ORT_CUDA_NUPKG=FILE      an offline copy of the Microsoft.ML.OnnxRuntime.Gpu.Linux .nupkg matching
#                            onnxruntime-node's version: its CUDA provider libraries are unpacked from it
#                            instead of downloading (the download needs api.nuget.org)
#   GPU_CHECK_ROUNDS=N       timed generations per model and device (default 3; 1 on webgpu when the only Vulkan
#                            adapters are software ones, as lavapipe is)
#
# A machine without node can take a bundle made on one that has it: `bash bench/gpu-check.sh --bundle` writes
# .gpu-bundle/ (node, the check compiled to one file, onnxruntime-node for linux-x64, xz-compressed); copy it along.
# Exit status: 0 when cuda and webgpu both ran, 3 when either could not (the reasons are printed), 2 when the check
# itself could not run.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '[gpu-check] %s\n' "$*"; }
section() { printf '\n== %s ==\n' "$*"; }
ROUNDS=${GPU_CHECK_ROUNDS:-3}
BUNDLE=$ROOT/.gpu-bundle

if [ "${1:-}" = "--bundle" ]; then
  # What the check needs on a machine without node or npm access, compressed to travel light (about 35 MB):
  # node, the check compiled to one file, and onnxruntime-node's linux-x64 build.
  set -e
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
  npx esbuild bench/gpu-check.ts --bundle --platform=node --format=esm --target=node20 --outfile="$BUNDLE/gpu-check.mjs" \
    --external:onnxruntime-node --banner:js="import { createRequire as __gpuCheckRequire } from 'node:module'; const require = __gpuCheckRequire(import.meta.url);" --log-level=warning
  xz -T0 -6 -c "$(command -v node)" >"$BUNDLE/node.xz"
  tar -cJf "$BUNDLE/node_modules.tar.xz" node_modules/onnxruntime-common node_modules/onnxruntime-node/package.json node_modules/onnxruntime-node/dist \
    node_modules/onnxruntime-node/lib node_modules/onnxruntime-node/script node_modules/onnxruntime-node/bin/napi-v6/linux/x64
  du -sh "$BUNDLE"
  say "bundle written to .gpu-bundle/ (git ignores it; carry it to the GPU machine)"
  exit 0
fi

section "machine"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi -L
  nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader | sed 's/^/driver, memory: /'
else
  say "no NVIDIA GPU visible (nvidia-smi missing or failing): cuda cannot run here"
fi
# onnxruntime-node's CUDA provider is built against CUDA 12 and cuDNN 9.
find_lib() {
  ldconfig -p 2>/dev/null | grep -q "[[:space:]]$1 " && return 0
  local d
  for d in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }}; do [ -e "$d/$1" ] && return 0; done
  return 1
}
libs_missing=()
for lib in libcudart.so.12 libcublas.so.12 libcublasLt.so.12 libcufft.so.11 libcurand.so.10 libcudnn.so.9; do
  if find_lib "$lib"; then say "found $lib"; else libs_missing+=("$lib"); fi
done
if [ ${#libs_missing[@]} -gt 0 ]; then
  say "missing from the library path: ${libs_missing[*]}$(find_lib libcudart.so.13 && echo ' (this machine has CUDA 13: libcudart.so.13)')"
fi

section "node"
NODE=${NODE:-$(command -v node || true)}
MODE=""
if [ -n "$NODE" ]; then
  if [ ! -d node_modules/onnxruntime-node ] && command -v npm >/dev/null 2>&1; then
    say "node_modules missing: npm ci (3 minutes at most; log /tmp/gpu-check-npm.log)"
    ONNXRUNTIME_NODE_INSTALL=skip timeout 180 npm ci --no-audit --no-fund >/tmp/gpu-check-npm.log 2>&1 || { say "npm ci failed:"; tail -3 /tmp/gpu-check-npm.log | sed 's/^/    /'; }
  fi
  [ -d node_modules/onnxruntime-node ] && [ -e node_modules/.bin/tsx ] && MODE=repo
fi
if [ -z "$MODE" ] && [ -f "$BUNDLE/gpu-check.mjs" ]; then
  # Unpacked with python3's lzma/tarfile where xz is not installed.
  if [ ! -d "$BUNDLE/node_modules" ]; then
    (cd "$BUNDLE" && { tar -xJf node_modules.tar.xz 2>/dev/null || python3 -c "import tarfile; tarfile.open('node_modules.tar.xz').extractall()"; })
  fi
  if [ -z "$NODE" ]; then
    [ -x "$BUNDLE/node" ] || { xz -dc "$BUNDLE/node.xz" 2>/dev/null || python3 -c "import lzma, sys; sys.stdout.buffer.write(lzma.open('$BUNDLE/node.xz').read())"; } >"$BUNDLE/node"
    chmod +x "$BUNDLE/node"
    NODE=$BUNDLE/node
  fi
  MODE=bundle
fi
case $MODE in
  repo) ORT_DIR=$ROOT/node_modules/onnxruntime-node; RUN_CHECK=("$NODE" --import tsx bench/gpu-check.ts) ;;
  bundle) ORT_DIR=$BUNDLE/node_modules/onnxruntime-node; RUN_CHECK=("$NODE" "$BUNDLE/gpu-check.mjs"); say "using .gpu-bundle/" ;;
  *)
    if [ -z "$NODE" ]; then
      say "node not found on PATH and no .gpu-bundle/: cannot run the check here."
      say "make a bundle where node is (bash bench/gpu-check.sh --bundle) and bring .gpu-bundle/ along, or set NODE=/path/to/node"
    else
      say "node_modules are missing and could not be installed: cannot run the check here"
    fi
    exit 2 ;;
esac
"$NODE" --version | sed 's/^/node /'

section "onnxruntime-node CUDA provider"
BIN=$ORT_DIR/bin/napi-v6/linux/x64
have_provider() { [ -f "$BIN/libonnxruntime_providers_cuda.so" ] && [ -f "$BIN/libonnxruntime_providers_shared.so" ]; }
ORT_VERSION=$("$NODE" -p "require('$ORT_DIR/package.json').version")
say "onnxruntime-node $ORT_VERSION, native folder $BIN"
if ! have_provider; then
  if [ -n "${ORT_CUDA_NUPKG:-}" ]; then
    say "unpacking the CUDA provider from $ORT_CUDA_NUPKG"
    python3 - "$ORT_CUDA_NUPKG" "$BIN" <<'PY' || say "could not unpack $ORT_CUDA_NUPKG"
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
for n in z.namelist():
    if n.startswith("runtimes/linux-x64/native/libonnxruntime_providers_"):
        open(os.path.join(sys.argv[2], os.path.basename(n)), "wb").write(z.read(n))
PY
  elif [ "$MODE" = bundle ]; then
    say "not installed, and the bundle cannot download it (made for machines without network); set ORT_CUDA_NUPKG to install it offline"
  else
    say "installing it: ONNXRUNTIME_NODE_INSTALL=cuda12 (downloads Microsoft.ML.OnnxRuntime.Gpu.Linux $ORT_VERSION from api.nuget.org; 90 s at most)"
    (cd "$ORT_DIR" && ONNXRUNTIME_NODE_INSTALL=cuda12 timeout 90 "$NODE" script/install.js) >/tmp/gpu-check-ort.log 2>&1 || true
    have_provider || say "the download failed: $(grep -m1 -E '^[A-Za-z]*Error' /tmp/gpu-check-ort.log || tail -1 /tmp/gpu-check-ort.log)"
  fi
fi
REASON=""
if have_provider; then
  say "provider libraries present"
  unresolved=$(ldd "$BIN/libonnxruntime_providers_cuda.so" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')
  [ -n "$unresolved" ] && say "the CUDA provider cannot resolve: $unresolved" && REASON="CUDA/cuDNN libraries it links against are missing: $unresolved"
else
  REASON="onnxruntime-node's CUDA provider libraries could not be obtained offline (no NuGet access); set ORT_CUDA_NUPKG to a Microsoft.ML.OnnxRuntime.Gpu.Linux $ORT_VERSION .nupkg"
  say "$REASON"
fi

section "Vulkan drivers and WebGPU adapters (webgpu: Dawn over Vulkan on Linux)"
# Mesa's Wayland code prints "XDG_RUNTIME_DIR is invalid or not set" without one; headless needs none, a private
# empty folder keeps it quiet (omni-diffusion does the same for itself).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then XDG_RUNTIME_DIR=$(mktemp -d); export XDG_RUNTIME_DIR; fi
icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
say "Vulkan driver manifests: ${icds:-none}${VK_ICD_FILENAMES:+ (VK_ICD_FILENAMES=$VK_ICD_FILENAMES overrides them)}"
ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || say "libvulkan.so.1 (the Vulkan loader, Debian/Ubuntu package libvulkan1) is not on the library path"
WEBGPU_ROUNDS=$ROUNDS
if command -v vulkaninfo >/dev/null 2>&1; then
  summary=$(DISPLAY= WAYLAND_DISPLAY= timeout 30 vulkaninfo --summary 2>/dev/null)
  printf '%s\n' "$summary" | grep -E '^GPU[0-9]+:|deviceType|deviceName|driverInfo' | sed 's/^[[:space:]]*/    /'
  types=$(printf '%s\n' "$summary" | grep -o 'PHYSICAL_DEVICE_TYPE_[A-Z_]*' | sort -u)
  [ "$types" = "PHYSICAL_DEVICE_TYPE_CPU" ] && WEBGPU_ROUNDS=1 && say "software adapter only (a CPU emulation): 1 timed round on webgpu"
else
  say "vulkaninfo not installed (Debian/Ubuntu: vulkan-tools); the probe below still says whether an adapter works"
  nvidia-smi -L >/dev/null 2>&1 || WEBGPU_ROUNDS=1
fi
timeout 60 "${RUN_CHECK[@]}" --probe-webgpu
probe_rc=$?
WEBGPU_REASON=""
[ $probe_rc -ne 0 ] && WEBGPU_REASON="no usable WebGPU adapter (Linux: install your GPU's Vulkan driver; without a GPU, mesa-vulkan-drivers >= 24)"

section "speed and images (each model on cpu, cuda and webgpu; 6 minutes at most)"
timeout 360 "${RUN_CHECK[@]}" --devices cpu,cuda,webgpu --rounds "$ROUNDS" --webgpu-rounds "$WEBGPU_ROUNDS" --json /tmp/gpu-check.json 2>&1 |
  grep --line-buffered -v -E '^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced|trace-warnings'
rc=${PIPESTATUS[0]}
section "result"
if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
  say "the check failed (exit $rc)"
  exit 2
fi
ran() { "$NODE" -e "const r=require('/tmp/gpu-check.json').results.filter(x=>x.device==='$1'); process.exit(r.length && r.every(x=>!x.error) ? 0 : 1)" 2>/dev/null; }
status=0
if ran cuda; then say "cuda ran every model: speed-ups and image differences above"; else say "cuda did NOT run${REASON:+: $REASON}"; status=3; fi
if ran webgpu; then say "webgpu ran every model: speed-ups and image differences above"; else say "webgpu did NOT run${WEBGPU_REASON:+: $WEBGPU_REASON}"; status=3; fi
exit $status
