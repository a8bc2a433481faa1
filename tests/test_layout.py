"""The layering of the repository (DESIGN.md, "Layers"): experiments and benchmarks use genjax's
public names only, and no experiment module imports another one (what two experiments share
lives in genjax or in a shared private module `experiments/_*.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT_MODULES = frozenset(p.stem for p in (REPO / "experiments").glob("*.py") if not p.stem.startswith("_"))


def _imports(tree: ast.AST, package: str):
    """(line, absolute module, imported names or None) of every import statement, at any depth
    (the experiments import lazily inside functions)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                module = ".".join(filter(None, [package, module]))
            yield node.lineno, module, [alias.name for alias in node.names]


def layout_violations(source: str, path: str, package: str, module_name: str) -> list[str]:
    """What `source` (the module `package.module_name`) imports against the layering rules:
    a private part of genjax (a `_name` module or object below `genjax`), or, from an experiment
    module, another experiment module."""
    problems = []
    is_experiment = package == "experiments" and not module_name.startswith("_")
    for line, module, names in _imports(ast.parse(source, filename=path), package):
        parts = module.split(".")
        if parts[0] == "genjax":
            private = [p for p in parts[1:] if p.startswith("_")] + [n for n in names or () if n.startswith("_")]
            if private:
                problems.append(f"{path}:{line}: imports the private genjax name(s) {private} ({module})")
        if is_experiment and parts[0] == "experiments":
            targets = parts[1:2] if len(parts) > 1 else list(names or ())
            others = [t for t in targets if t in EXPERIMENT_MODULES and t != module_name]
            if others:
                problems.append(f"{path}:{line}: the experiment {module_name} imports the experiment(s) {others}; "
                                "move what they share into genjax or a shared experiments/_*.py module")
    return problems


def test_experiments_and_benchmarks_import_public_names_and_no_sibling_experiment():
    files = sorted((REPO / "experiments").glob("*.py")) + sorted((REPO / "benchmarks").glob("*.py"))
    assert len(files) > 20 and "vae" in EXPERIMENT_MODULES and "gan_mode_collapse" in EXPERIMENT_MODULES
    problems = []
    for f in files:
        problems += layout_violations(f.read_text(), str(f.relative_to(REPO)), f.parent.name, f.stem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source,found", [
    ("from genjax.nn import _gan as gnn", "private genjax name(s) ['_gan']"),
    ("def f():\n    from genjax.nn._diffusion import UNet", "private genjax name(s) ['_diffusion']"),
    ("import genjax.train._loop", "private genjax name(s) ['_loop']"),
    ("from genjax.train._loop import local_batch_split", "private genjax name(s) ['_loop']"),
    ("from genjax.train import _host_state", "private genjax name(s) ['_host_state']"),
    ("from experiments import ddpm_mnist as dm", "imports the experiment(s) ['ddpm_mnist']"),
    ("from experiments.gan_mode_collapse import PUBLISHED", "imports the experiment(s) ['gan_mode_collapse']"),
    ("import experiments.vqvae", "imports the experiment(s) ['vqvae']"),
    ("from . import vqvae", "imports the experiment(s) ['vqvae']"),
])
def test_the_layout_check_finds_what_the_issue_found(source, found):
    """The imports that issue 16 listed (and their spellings) are caught; the allowed ones are not."""
    (problem,) = layout_violations(source, "experiments/latent_diffusion.py", "experiments", "latent_diffusion")
    assert found in problem and "experiments/latent_diffusion.py:" in problem


def test_the_layout_check_allows_public_names_shared_modules_and_benchmarks_builders():
    allowed = ("from genjax import nn, train\nfrom genjax.nn import UNet\nimport genjax.train\n"
               "from experiments._framework import Built\nfrom experiments import _gan_common, REGISTRY\n"
               "from experiments.vqvae import load_autoencoder\n")
    assert layout_violations(allowed, "experiments/vqvae.py", "experiments", "vqvae") == []  # itself
    assert layout_violations("from experiments import vqvae", "experiments/_tour.py", "experiments", "_tour") == []
    assert layout_violations("from experiments import gan_mnist as exp", "benchmarks/_families.py", "benchmarks",
                             "_families") == []
