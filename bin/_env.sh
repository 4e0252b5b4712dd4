# Sourced by bin/demo and bin/test: create .venv in the repo root when missing, (re)install when
# pyproject.toml changed, reuse it otherwise. Only the package registries are needed.
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
STAMP="$VENV/.norm-nerf-installed"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo ">> installing norm-nerf and its pinned dependencies into $VENV (first time: several GB, a few minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
  echo "$WANT" > "$STAMP"
fi
# nerfstudio's ns-render needs an ffmpeg executable; use the system one, else the imageio-ffmpeg binary (from PyPI).
if ! command -v ffmpeg >/dev/null 2>&1 && [ ! -e "$VENV/bin/ffmpeg" ]; then
  ln -s "$("$VENV/bin/python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" "$VENV/bin/ffmpeg"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
