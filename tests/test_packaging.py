"""The package as pip installs it from a wheel: it carries its schema and migrates a database.

The wheel is built from a copy of the project (so the checkout gets no `build/`), with an
extra file in a `migrations/` subfolder to show that subfolders ship too. It is installed
with `--no-deps` into a fresh venv that borrows this environment's site-packages for the
dependencies, then `python -m bot migrate` runs from that venv, outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import sqlite3
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from bot.base.migrations import MIGRATIONS_DIR, discover

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("bot", "handlers", "tools", "memory", "migrations")
PROBE = "migrations/postgres/9999_packaging_probe.sql"


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def copy_project(dest: Path) -> Path:
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in SOURCES:
        shutil.copytree(REPO / name, dest / name, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    (dest / PROBE).parent.mkdir(exist_ok=True)
    (dest / PROBE).write_text("SELECT 1;\n")
    return dest


def build_wheel(src: Path, out: Path) -> Path:
    pip_wheel = ("pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src)
    run(sys.executable, "-m", *pip_wheel, cwd=src)
    (wheel,) = out.glob("coworker-*.whl")
    return wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A venv holding only the wheel; this environment's packages supply the dependencies."""
    venv.create(path, with_pip=False)
    python = path / "bin" / "python"
    # pip runs under the new interpreter, which cannot see the checkout's editable install yet.
    install = ("install", "--no-deps", "--no-index", "-q", wheel)
    run(sys.executable, "-m", "pip", "--python", python, *install, cwd=path)
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=path)
    Path(purelib.strip(), "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def test_a_wheel_installs_the_migrations_and_migrates_a_blank_database(tmp_path: Path) -> None:
    wheel = build_wheel(copy_project(tmp_path / "src"), tmp_path / "dist")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for p in MIGRATIONS_DIR.rglob("*.sql")}
    assert sources and sources | {PROBE} <= shipped

    python = fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    where = run(python, "-c", "import bot; print(bot.__file__)", cwd=elsewhere, env=env)
    assert Path(where.strip()).is_relative_to(tmp_path / "venv")

    database = elsewhere / "blank.db"
    env["DATABASE_URL"] = f"sqlite:///{database}"
    out = run(python, "-m", "bot", "migrate", cwd=elsewhere, env=env)
    names = [m.name for m in discover()]
    assert out.strip() == "applied: " + ", ".join(names)
    with sqlite3.connect(database) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        recorded = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert recorded == names
    assert {"tasks", "checkpoints", "approvals", "llm_calls", "tool_calls", "memories"} <= tables
