#!/usr/bin/env bash
# Installs a CUDA toolkit from PyPI into a private prefix and prints the variables that make
# `cargo build --features cuda` find it (candle 0.11.1: cudarc 0.19 links libcuda, libcublas,
# libcublasLt, libcurand, libnvrtc at build time; candle-kernels runs nvcc through cudaforge and
# links libcudart).
#
# Usage:   bash xtask/cuda-toolkit-from-pypi.sh [PREFIX]      (default /opt/cuda-pip)
# Then:    eval "$(bash xtask/cuda-toolkit-from-pypi.sh PREFIX)"
#          CARGO_TARGET_DIR=/tmp/llb-cuda-target cargo build --release -p llb-cli --features cuda
#
# Idempotent: a second run with the same PREFIX installs nothing and prints the same lines.
# Progress goes to stderr; stdout carries only the `export` lines.
#
# Why CUDA 13.4: NVIDIA's cu12 wheels (nvidia-cuda-nvcc-cu12 up to 12.9.86) ship ptxas but no
# nvcc; the CUDA 13 wheels ship the whole compiler (nvcc, cudafe++, cicc, fatbinary) in one
# tree, nvidia/cu13. 13.4 is the newest release cudarc 0.19.10 knows (13.5 makes its build
# script panic). Running the result needs an NVIDIA driver new enough for CUDA 13 (580 or later).
#
# No wheel ships the driver's link stub (lib64/stubs/libcuda.so of a full toolkit), so this
# script builds one: every `cu*` function that the toolkit's own cuda.h declares, as an empty
# function in a library whose SONAME is libcuda.so.1. It only satisfies the linker; at run time
# the driver's real libcuda.so.1 is loaded instead.
#
# Variables: CUDA_COMPUTE_CAP (default 90, an H100/H200; 80 for an A100) picks the kernels'
# architecture, since cudaforge otherwise asks nvidia-smi, which a build machine may not have.
set -euo pipefail

PREFIX="${1:-/opt/cuda-pip}"
TOOLKIT_VERSION="13.4.3"
COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
SITE="$PREFIX/site"
TREE="$SITE/nvidia/cu13"
HOME_DIR="$PREFIX/cuda-$TOOLKIT_VERSION"

log() { echo "cuda-toolkit-from-pypi: $*" >&2; }

# 1. The wheels (skipped when this version is already there).
if [[ ! -d "$SITE/cuda_toolkit-$TOOLKIT_VERSION.dist-info" || ! -x "$TREE/bin/nvcc" ]]; then
    log "installing cuda-toolkit $TOOLKIT_VERSION from PyPI into $SITE"
    python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$SITE" \
        "cuda-toolkit[nvcc,cudart,cublas,curand,nvrtc,cccl]==$TOOLKIT_VERSION" >&2
else
    log "cuda-toolkit $TOOLKIT_VERSION already in $SITE"
fi
[[ -x "$TREE/bin/nvcc" ]] || { log "no nvcc in $TREE/bin after the install"; exit 1; }

# 2. A CUDA_HOME-like folder: bin, include, nvvm as links into the wheel tree; lib64 with the
#    unversioned names the linker asks for (-lcublas finds libcublas.so) and the driver stub.
mkdir -p "$HOME_DIR/lib64/stubs"
for dir in bin include nvvm; do
    ln -sfn "$TREE/$dir" "$HOME_DIR/$dir"
done
for lib in "$TREE"/lib/*.so.* "$TREE"/lib/*.a; do
    ln -sfn "$lib" "$HOME_DIR/lib64/$(basename "$lib")"
done
for versioned in "$TREE"/lib/lib{cudart,cublas,cublasLt,curand,nvrtc}.so.*; do
    name="$(basename "$versioned")"
    ln -sfn "$versioned" "$HOME_DIR/lib64/${name%%.so.*}.so"
done

# 3. The driver link stub, rebuilt when cuda.h is newer than it.
STUB="$HOME_DIR/lib64/stubs/libcuda.so"
if [[ ! -f "$STUB" || "$TREE/include/cuda.h" -nt "$STUB" ]]; then
    log "building the libcuda.so link stub from $TREE/include/cuda.h"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # cuda.h maps old names to versioned ones (cuCtxCreate -> cuCtxCreate_v2) unless
    # __CUDA_API_VERSION_INTERNAL is set, which declares the legacy names too: take both.
    for defs in "" "-D__CUDA_API_VERSION_INTERNAL"; do
        # shellcheck disable=SC2086
        gcc -E -P $defs -I "$TREE/include" -x c "$TREE/include/cuda.h"
    done | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u \
        >"$work/names.txt"
    sed 's/.*/void &(void) {}/' "$work/names.txt" >"$work/stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$work/libcuda.so" "$work/stub.c"
    mv "$work/libcuda.so" "$STUB"
    log "stub exports $(wc -l <"$work/names.txt") functions"
fi

log "nvcc: $("$HOME_DIR/bin/nvcc" --version | grep -o 'release [0-9.]*')"
cat <<EOF
export CUDA_HOME="$HOME_DIR"
export CUDA_ROOT="$HOME_DIR"
export PATH="$HOME_DIR/bin:\$PATH"
export LD_LIBRARY_PATH="$HOME_DIR/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="$COMPUTE_CAP"
EOF
