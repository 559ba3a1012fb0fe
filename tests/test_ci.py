"""`.ci/run` is what CI runs: the lint gate as well as the suite."""

import re
from pathlib import Path

CI_RUN = Path(__file__).resolve().parent.parent / ".ci" / "run"


def test_ci_runs_the_lint_and_the_tests() -> None:
    commands = [
        line.strip()
        for line in CI_RUN.read_text().splitlines()
        if re.fullmatch(r"\s*make \w+\s*", line)
    ]
    assert commands == ["make lint", "make test"]
