"""The README's quick start shows what the program really prints.

Every console command of the README's "Quick start" section that is followed by output lines is
run on the same fixture clip, and its standard output must be the lines shown, label for label
and probability for probability; only timing figures (``12 ms``, ``550x real time``), which
legitimately vary from run to run, are masked. The quick start's Python example is run as
written and must print the text block that follows it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Figures that depend on the machine and its load, not on the audio or the model.
TIMING = re.compile(r"\d+(?:\.\d+)?\s*(?:ms|us|x real time)\b")


def quick_start() -> str:
    """The text of the README's ``## Quick start`` section (up to the next ``## `` heading)."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Quick start\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has a '## Quick start' section"
    return match.group(1)


def console_examples(section: str) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` for each ``$ command`` in the section's console blocks."""
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```console\n(.*?)^```", section, flags=re.S | re.M):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples:
                examples[-1][1].append(line)
    return examples


def checked_examples() -> list[tuple[str, list[str]]]:
    """The examples that show output: those are the ones whose output is a claim."""
    return [(cmd, out) for cmd, out in console_examples(quick_start()) if out]


def normalise(lines: list[str]) -> list[str]:
    return [TIMING.sub("<time>", line.rstrip()) for line in lines]


def run_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FORCE_COLOR", None)
    env["COLUMNS"] = "100"
    return env


def test_quick_start_shows_commands_with_their_output() -> None:
    examples = checked_examples()
    assert examples, "the quick start shows at least one command with its output"
    for command, _ in examples:
        argv = shlex.split(command, comments=True)
        assert argv[0] == "stream-ser", command
        fixtures = [a for a in argv if a.startswith("tests/fixtures/")]
        assert fixtures and all((ROOT / f).is_file() for f in fixtures), (
            f"{command!r} scores a fixture clip that exists, so anyone can run it")


@pytest.mark.parametrize("command,expected", checked_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_quick_start_command_prints_what_the_readme_shows(command: str, expected: list[str]) -> None:
    argv = shlex.split(command, comments=True)
    # `stream-ser ARGS` is `python -m stream_ser ARGS` of this interpreter's installation.
    result = subprocess.run([sys.executable, "-m", "stream_ser", *argv[1:]], cwd=ROOT, env=run_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert normalise(result.stdout.splitlines()) == normalise(expected), (
        f"README.md shows for `{command}`:\n" + "\n".join(expected)
        + "\n\nbut it prints:\n" + result.stdout)


def python_example() -> tuple[str, str]:
    """The quick start's first ``python`` block and the ``text`` block after it (its output)."""
    match = re.search(r"^```python\n(.*?)^```\n(?:(?!```).*\n)*?^```text\n(.*?)^```", quick_start(),
                      flags=re.S | re.M)
    assert match, "the quick start has a python block followed by a text block with its output"
    return match.group(1), match.group(2)


def test_python_example_is_five_lines() -> None:
    code, _ = python_example()
    assert len(code.strip().splitlines()) <= 6, code


def test_python_example_prints_what_the_readme_shows() -> None:
    code, expected = python_example()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=run_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert normalise(result.stdout.splitlines()) == normalise(expected.splitlines()), (
        "README.md shows:\n" + expected + "\nbut the example prints:\n" + result.stdout)
