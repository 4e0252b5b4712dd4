"""``-m "not slow"`` skips every test that trains a nerfstudio model or spawns training processes (README: Tests).

The check reads the test sources (no imports, no runs): a test trains when its body, a helper function of its module
that it calls, or a fixture it uses reaches a training entry point below; such a test must carry
``@pytest.mark.slow`` (or its module ``pytestmark = pytest.mark.slow``)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Names whose use starts training: nerfstudio runs in-process, the NeRF demo, and multi-process gloo runs.
TRAINING_NAMES = {"setup_trainer", "run_nerf_demo", "run_two_ranks", "run_as_torchrun"}
# ``from norm_nerf.ns.runs import train``: the in-process ns-train.
TRAINING_IMPORTS = {("norm_nerf.ns.runs", "train"), ("norm_nerf.ns.runs", "setup_trainer"),
                    ("norm_nerf.ns.launch", "train")}  # fmt: skip
TRAINING_COMMANDS = ("ns-train", "norm_nerf.scripts.train")


def _direct_training(fn: ast.AST) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id in TRAINING_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr in TRAINING_NAMES:
            return True
        if isinstance(node, ast.ImportFrom) and any((node.module, a.name) in TRAINING_IMPORTS for a in node.names):
            return True
        text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
        if any(c in text for c in TRAINING_COMMANDS):
            return True
        if (  # trainer.train(): a nerfstudio Trainer's training loop
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "train"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "trainer"
        ):
            return True
    return False


def _called_names(fn: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _is_slow_mark(node: ast.AST) -> bool:
    node = node.func if isinstance(node, ast.Call) else node
    return isinstance(node, ast.Attribute) and node.attr == "slow" and "mark" in ast.unparse(node)


def _is_fixture(fn: ast.FunctionDef) -> bool:
    return any("fixture" in ast.unparse(d) for d in fn.decorator_list)


def _module_is_slow(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            if any(_is_slow_mark(v) for v in values):
                return True
    return False


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _training_functions(funcs: dict[str, ast.FunctionDef], training_fixtures: set[str]) -> set[str]:
    """Functions of one module that train, directly, through a module function they call or a fixture they take."""
    trains = {name for name, fn in funcs.items() if _direct_training(fn)}
    trains |= {name for name, fn in funcs.items() if {a.arg for a in fn.args.args} & training_fixtures}
    changed = True
    while changed:
        grown = trains | {name for name, fn in funcs.items() if _called_names(fn) & trains}
        changed, trains = grown != trains, grown
    return trains


def unmarked_training_tests(root: Path = TESTS) -> list[str]:
    """``path::test`` of every test that trains without the slow marker."""
    files = [p for p in sorted(root.rglob("*.py")) if p != Path(__file__).resolve()]  # this file names them all
    trees = {p: ast.parse(p.read_text(), str(p)) for p in files}
    training_fixtures: set[str] = set()
    while True:  # fixtures that train, also through other fixtures (any folder: the names are unique here)
        found = {
            name
            for tree in trees.values()
            for name in _training_functions(_functions(tree), training_fixtures)
            if _is_fixture(_functions(tree)[name])
        }
        if found <= training_fixtures:
            break
        training_fixtures |= found
    missing = []
    for path, tree in trees.items():
        if not path.name.startswith("test_") or _module_is_slow(tree):
            continue
        funcs = _functions(tree)
        for name in sorted(_training_functions(funcs, training_fixtures)):
            fn = funcs[name]
            if name.startswith("test_") and not any(_is_slow_mark(d) for d in fn.decorator_list):
                missing.append(f"{path.relative_to(root.parent)}::{name}")
    return missing


def test_every_training_test_is_marked_slow() -> None:
    missing = unmarked_training_tests()
    assert not missing, f"these tests train; mark them @pytest.mark.slow: {missing}"


def test_the_check_sees_training_through_helpers_and_fixtures(tmp_path) -> None:
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef run():\n    from norm_nerf.ns.runs import train\n    return train(0)\n"
        "\n@pytest.fixture\ndef loaded(run):\n    return run\n"
    )
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\ndef _helper(cfg):\n    trainer = setup(cfg)\n    trainer.train()\n\n"
        "def test_helper():\n    _helper(1)\n\ndef test_fixture(loaded):\n    pass\n\n"
        "def test_cli():\n    cmd = ['ns-train', 'x']\n\n@pytest.mark.slow\ndef test_marked(run):\n    pass\n\n"
        "def test_plain():\n    assert 1\n"
    )
    names = [m.split("::")[1] for m in unmarked_training_tests(tmp_path)]
    assert names == ["test_cli", "test_fixture", "test_helper"]
