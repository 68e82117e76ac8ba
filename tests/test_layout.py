"""The package layout keeps its promises: the live path never loads torch, evaluation or network code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import edge_xemo

PACKAGE = Path(edge_xemo.__file__).parent
LIVE_PATH = ("edge_xemo.analyzer", "edge_xemo.vision.stage", "edge_xemo.voice.stage", "edge_xemo.voice.aecb",
             "edge_xemo.voice.asr", "edge_xemo.vision.vecb", "edge_xemo.reasoning.decoder", "edge_xemo.io.sources",
             "edge_xemo.io.sinks")
NETWORK = ("socket", "ssl", "http", "urllib.request", "requests", "httpx", "aiohttp", "huggingface_hub")


def test_live_path_loads_no_torch_no_evaluation_and_no_network_module():
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in LIVE_PATH) +
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       timeout=120).stdout)
    assert not [m for m in loaded if m == "torch" or m.startswith("torch.")]
    assert not [m for m in loaded if m.startswith("edge_xemo.eval")]
    assert not [m for m in loaded if m in NETWORK or m.startswith(tuple(n + "." for n in NETWORK))]


def _imports(path: Path) -> set[str]:
    """Absolute names of the edge_xemo modules a file imports (relative imports resolved)."""
    module = ".".join(("edge_xemo", *path.relative_to(PACKAGE).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {n for n in out if n.startswith("edge_xemo")}


def test_only_the_command_line_reaches_into_evaluation():
    """Runtime rooms never import edge_xemo.eval; the CLI mounts its sub-commands, eval may import anything."""
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "eval" or rel == Path("cli.py"):
            continue
        bad = sorted(n for n in _imports(path) if n.startswith("edge_xemo.eval"))
        if bad:
            offenders[str(rel)] = bad
    assert offenders == {}


def test_rooms_depend_downwards():
    """core imports no other room; io, vision, voice and reasoning import only core (and themselves: the voice stage
    reads audio the io room conditioned where it entered, it does not convert it itself); the
    analyzer's parts (analysis) import neither the vision and voice stages nor the analyzer that composes them."""
    allowed = {"core": {"core"}, "io": {"core", "io"}, "vision": {"core", "vision"}, "voice": {"core", "voice"},
               "reasoning": {"core", "reasoning"}, "analysis": {"core", "io", "reasoning", "analysis"}}
    offenders = {}
    for room, ok in allowed.items():
        for path in (PACKAGE / room).rglob("*.py"):
            rooms = {n.split(".")[1] for n in _imports(path) if n.count(".") >= 1}
            if rooms - ok:
                offenders[str(path.relative_to(PACKAGE))] = sorted(rooms - ok)
    assert offenders == {}


def test_public_names_stay_importable():
    for name in edge_xemo.__all__:
        assert getattr(edge_xemo, name) is not None
