"""The layer rules of DESIGN.md, read from the imports (ast), not from a convention.

- `bot.base` (settings, config, errors, database, clock, redaction) imports nothing of
  Coworker above it;
- `tools/` and `memory/` import nothing of `bot/` outside `bot.base`;
- `tools/` and `memory/` never import `handlers/` or `slack_bolt`;
- `handlers/` runs no SQL: it touches no database handle, task store or approval service
  (approval decisions go through `Delegation.decide`).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("bot", "handlers", "tools", "memory")


def imports_of(path: Path) -> list[str]:
    """Every module `path` imports, absolute, at any depth (also inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            # `from bot import clock` imports the module bot.clock
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def ours(name: str) -> bool:
    return name.split(".")[0] in OURS


def violations(package: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports_of(path):
            if ours(name) and not name.startswith(allowed):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def is_module_or_package(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def test_the_ground_floor_imports_nothing_above_it() -> None:
    assert violations("bot/base", ("bot.base",)) == []


def test_tools_and_memory_stand_only_on_the_ground_floor() -> None:
    bad = []
    for package in ("tools", "memory"):
        for line in violations(package, ("bot.base", "tools", "memory")):
            # `from bot.tasks import Task` lists bot.tasks.Task too: count modules only
            if is_module_or_package(line.rsplit(" ", 1)[1]):
                bad.append(line)
    assert bad == []


def test_tools_and_memory_never_import_slack_or_the_adapter() -> None:
    bad = []
    for package in ("tools", "memory", "bot/base"):
        for path in sorted((ROOT / package).rglob("*.py")):
            bad += [
                f"{path.relative_to(ROOT)} imports {name}"
                for name in imports_of(path)
                if name.split(".")[0] in ("handlers", "slack_bolt")
            ]
    assert bad == []


#: What a handler reaching around the services would touch.
BELOW_THE_SERVICES = {"db", "tasks", "approvals", "execute", "fetchone", "fetchall", "fetchval"}


def reached(path: Path) -> list[str]:
    """Attributes of `BELOW_THE_SERVICES` that `path` uses (`svc.db`, `x.approvals.get`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return [
        f"{where}:{node.lineno} uses .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in BELOW_THE_SERVICES
    ]


def test_handlers_reach_the_core_only_through_its_services() -> None:
    bad = [line for path in sorted((ROOT / "handlers").rglob("*.py")) for line in reached(path)]
    assert bad == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rule is not vacuous: an upward import is found, wherever it hides."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from bot.tasks import TaskStore\n    import handlers.blocks\n")
    assert "bot.tasks" in imports_of(sample)
    assert "handlers.blocks" in imports_of(sample)
    sample.write_text("async def f(svc):\n    await svc.approvals.get(1)\n")
    assert reached(sample) == ["sample.py:2 uses .approvals"]
