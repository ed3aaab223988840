"""Repository contracts: CI runs exactly the README's test command; fixtures stay small."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_install_and_test_commands() -> None:
    main_cmd, test_cmd = readme_commands()[:2]
    # The first command works without a microphone: it replays the demo recording.
    assert "pip install" in main_cmd and main_cmd.endswith("stream-ser listen --demo")
    assert "pip install" in test_cmd and test_cmd.endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def test_fixtures_are_small() -> None:
    size = sum(p.stat().st_size for p in (ROOT / "tests" / "fixtures").rglob("*") if p.is_file())
    assert size < 2_000_000
