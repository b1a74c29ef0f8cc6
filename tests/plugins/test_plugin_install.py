"""The test plugins live in a throw-away install for the test session, never in the user's environment."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_toy_plugin_comes_from_the_throw_away_install():
    location = Path(importlib.metadata.distribution("virtualcell-toy-plugin").locate_file("")).resolve()
    assert location.is_relative_to(Path(tempfile.gettempdir()).resolve()), (
        f"the toy plugin is imported from {location}, not from the tests' throw-away install: "
        f"run `{sys.executable} -m pip uninstall virtualcell-toy-plugin` (scripts/test.sh must not install it)")
    assert not location.is_relative_to(Path(sys.prefix).resolve())


def test_user_environment_does_not_see_the_test_plugins():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import importlib.metadata as m; "
            "print(sorted(e.name for e in m.entry_points(group='virtualcell.components') if e.value.startswith('virtualcell_toy')))")
    seen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert seen == "[]", f"the environment outside the test session registers the test plugin's components {seen}"


def test_test_script_installs_no_plugin_into_the_environment():
    script = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    installs = [line for line in script.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and not any("tests/plugins" in line for line in installs), installs
