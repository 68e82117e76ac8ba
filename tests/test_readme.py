"""Every `edge-xemo` command the README shows is one the command line accepts as written, and the ones
that need no device, no media and no server run as shown."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import REPO, run_cli

README = REPO / "README.md"
RUN_AS_SHOWN = {("models", "verify"), ("reason",), ("devices",)}
"""Commands run to the end (the others open a camera, a microphone, a server or the user's files)."""


def readme_commands() -> list[list[str]]:
    """The arguments of each `edge-xemo ...` line in the README's bash blocks (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    out = []
    for line in (line for block in blocks for line in block.splitlines()):
        words = shlex.split(line, comments=True)
        if words and words[0] in ("edge-xemo", ".venv/bin/edge-xemo"):
            out.append(words[1:])
    return out


COMMANDS = readme_commands()


def test_the_readme_shows_the_main_commands():
    shown = {args[0] for args in COMMANDS}
    assert {"demo", "live", "analyze", "serve", "reason", "eval", "models", "devices", "ros2"} <= shown, shown


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_each_readme_command_parses(args):
    """With --help after them, an option the command does not have is still an error (click parses left
    to right): the README's flags exist."""
    proc = run_cli(*args, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout


NEED_NOTHING = [a for a in COMMANDS if tuple(a[:1]) in RUN_AS_SHOWN or tuple(a[:2]) in RUN_AS_SHOWN]


@pytest.mark.parametrize("args", NEED_NOTHING, ids=[" ".join(a) for a in NEED_NOTHING])
def test_readme_commands_that_need_nothing_run_as_shown(args):
    proc = run_cli(*args, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_every_file_the_readme_links_to_exists():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local and all((REPO / link).exists() for link in local), [x for x in local if not (REPO / x).exists()]
