"""The optimum venv (runs/venv-optimum) that `export.optimum_text` runs in, made from export/requirements-optimum.txt.

    python -m export.optimum_env          # create it once (about 1.5 min and 1.3 GB with the local torch wheel)

Separate from the project's venv because optimum-onnx 0.1.0 requires transformers < 4.58 while the train
extra needs transformers >= 5 (a shared venv would downgrade it). $EDGE_XEMO_OPTIMUM_PYTHON names another
interpreter with those packages instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_ENV = "EDGE_XEMO_OPTIMUM_PYTHON"
VENV = ROOT / "runs" / "venv-optimum"
REQUIREMENTS = ROOT / "export" / "requirements-optimum.txt"


def python() -> Path:
    """The optimum venv's interpreter: $EDGE_XEMO_OPTIMUM_PYTHON, else runs/venv-optimum/bin/python."""
    return Path(os.environ.get(PYTHON_ENV) or VENV / "bin" / "python")


def ready() -> bool:
    """True when the interpreter exists and, for runs/venv-optimum, was installed from the current requirements."""
    if os.environ.get(PYTHON_ENV):
        return python().exists()
    done = VENV / ".complete"
    return python().exists() and done.exists() and done.read_text() == REQUIREMENTS.read_text()


def create(log) -> str:
    """Create runs/venv-optimum unless it is ready; pip's output goes to the open file `log`."""
    if ready():
        return f"using {python()}"
    if os.environ.get(PYTHON_ENV):
        raise RuntimeError(f"${PYTHON_ENV} names {python()}, which does not exist")
    for argv in ([sys.executable, "-m", "venv", "--clear", str(VENV)],
                 [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)]):
        if subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode:
            raise RuntimeError(f"{' '.join(argv[:4])} failed")
    (VENV / ".complete").write_text(REQUIREMENTS.read_text())
    return f"created {VENV} from {REQUIREMENTS.name}"


if __name__ == "__main__":
    try:
        print(create(sys.stdout))
    except RuntimeError as e:
        sys.exit(f"error: {e}")
