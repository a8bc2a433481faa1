"""The structure the six math modules share, tested once for all of them.

For each of `genjax.divergences`, `gan`, `autoencoders`, `vae`, `vq` and `diffusion`:

- its docstring examples run and pass (`doctest`);
- its `__all__` is exactly what `from genjax.<module> import *` gives, names every public function
  and class the module defines (and nothing defined elsewhere), and every name is documented;
- `import genjax.<module>` in a fresh interpreter imports no third-party package that `import jax`
  has not already imported (so no Flax, Optax, Orbax, TFDS, matplotlib or SciPy), and no genjax
  module outside the math layer.

These tests replace the per-module copies that test_divergences.py, test_gan.py,
test_autoencoders.py, test_vae.py and test_diffusion.py each had; every assertion those copies made
is kept below (the minimum example counts, the exact lists of public names, the required docstring
sections, the list of heavy packages). `genjax.vq`'s doctests had no copy and run here first.

README.md's conventions section must name every public function of the six modules. The last
test runs the ```python blocks of README.md's sections on the math API and checks every
number the README states in a trailing comment (`dv.entropy(p, base=2)  # 2.23 bits`) against the
value the line computes, to the precision the README states it.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import io
import json
import math
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest

MODULES = ("divergences", "gan", "autoencoders", "vae", "vq", "diffusion")
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# The minimum number of doctest examples: the floors the per-module copies asserted (divergences
# > 10, gan >= 10, autoencoders > 10, vae > 15, diffusion > 0); vq: the 90 examples it has.
MIN_EXAMPLES = {"divergences": 11, "gan": 10, "autoencoders": 11, "vae": 16, "vq": 90, "diffusion": 1}

# The exact public names the per-module copies asserted.
EXACT_ALL = {
    "divergences": [
        "entropy", "cross_entropy", "kl_divergence", "js_divergence", "mutual_information",
        "entropy_from_logits", "cross_entropy_from_logits", "kl_divergence_from_logits",
        "js_divergence_from_logits", "bernoulli_kl", "gaussian_kl", "wasserstein_1d",
    ],
    "vae": [
        "LIKELIHOODS", "reparameterize", "elbo", "log_likelihood", "diag_gaussian_log_prob",
        "score_function_elbo", "iwae_log_weights", "iwae_bound", "sample_iwae_log_weights",
        "estimate_log_likelihood",
    ],
}

# Modules whose every public callable carries all four docstring parts (as their copies asserted);
# in the others every public function has at least `Args:` (if it takes any) and `Returns:`.
FULL_SECTIONS = ("Args:", "Returns:", "References:", ">>>")
FULLY_DOCUMENTED = ("divergences", "autoencoders", "vae")

# Packages a math module must never import (the union of the copies' lists; a prefix match, as
# test_gan.py's copy did, so `flax.linen` counts as `flax`).
HEAVY = ("flax", "optax", "orbax", "tensorflow_datasets", "tensorflow", "matplotlib", "scipy",
         "torch", "pandas")

# The genjax modules a math module may import: the package, the other math modules and the
# private helpers (genjax._checks, genjax._numerics).
MATH_LAYER = {"genjax"} | {f"genjax.{m}" for m in MODULES}


def _module(name: str):
    return importlib.import_module(f"genjax.{name}")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_and_pass(name):
    result = doctest.testmod(_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"genjax.{name}: {result.failed} of {result.attempted} examples failed"
    assert result.attempted >= MIN_EXAMPLES[name], (name, result.attempted)


@pytest.mark.parametrize("name", MODULES)
def test_public_names_are_importable_and_complete(name):
    mod = _module(name)
    public = list(mod.__all__)
    assert len(public) == len(set(public)), f"duplicates in genjax.{name}.__all__"
    if name in EXACT_ALL:
        assert sorted(public) == sorted(EXACT_ALL[name])
    namespace: dict = {}
    exec(f"from genjax.{name} import *", namespace)  # noqa: S102 - the star import is the claim
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(public)
    defined_here = {
        n for n, obj in vars(mod).items()
        if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == mod.__name__
    }
    assert defined_here <= set(public), f"public but not in __all__: {sorted(defined_here - set(public))}"
    for n in public:
        obj = getattr(mod, n)
        if callable(obj):  # one place per name: nothing re-exported from another module
            assert obj.__module__ == mod.__name__, (n, obj.__module__)


@pytest.mark.parametrize("name", MODULES)
def test_public_names_are_documented(name):
    mod = _module(name)
    assert mod.__doc__ and "References:" in mod.__doc__, f"genjax.{name} module docstring"
    for n in mod.__all__:
        obj = getattr(mod, n)
        if not callable(obj):  # constants (vae.LIKELIHOODS, autoencoders.CORRUPTIONS)
            continue
        doc = obj.__doc__
        assert doc and doc.strip().splitlines()[0].strip(), f"{name}.{n} has no summary line"
        if name in FULLY_DOCUMENTED:
            missing = [s for s in FULL_SECTIONS if s not in doc]
            assert not missing, f"{name}.{n} lacks {missing}"
        elif inspect.isfunction(obj):
            takes_args = bool(inspect.signature(obj).parameters)
            missing = [s for s in (("Args:",) if takes_args else ()) + ("Returns:",) if s not in doc]
            assert not missing, f"{name}.{n} lacks {missing}"


_IMPORT_PROBE = """
import json, sys
import jax, jax.numpy
before = {m.split('.')[0] for m in sys.modules}
import genjax.%s
top = {m.split('.')[0] for m in sys.modules}
print(json.dumps({
    "new_packages": sorted(top - before - set(sys.stdlib_module_names)),
    "heavy": sorted(m for m in sys.modules if m.split('.')[0] in %r),
    "genjax": sorted(m for m in sys.modules if m.split('.')[0] == 'genjax'),
}))
"""


@pytest.mark.parametrize("name", MODULES)
def test_import_is_light(name):
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE % (name, HEAVY)], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["heavy"] == [], found["heavy"]
    assert found["new_packages"] == ["genjax"], found["new_packages"]
    outside = [m for m in found["genjax"] if m not in MATH_LAYER and not m.startswith("genjax._")]
    assert outside == [], f"genjax.{name} imports {outside}"
    assert f"genjax.{name}" in found["genjax"]


# ------------------------------------------------------------------------------ README examples

# README.md sections (level-2 headings) whose ```python blocks use only the math API. (The blocks
# of "Using the losses from other NN libraries" train models: tests/test_framework_free.py runs them.)
README_SECTIONS = (
    "Reusing a loss in your own JAX code",
    "Conventions of the math API",
)
_NUMBER = re.compile(r"#\s*([-+]?\d+(?:\.(\d+))?)(?![\w.])")


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = section.partition("\n")
        if heading.strip() == title:
            return body
    raise AssertionError(f"README.md has no section {title!r}")


def _readme_blocks() -> list[tuple[str, int, str]]:
    """(section, index, code) of every ```python block in README_SECTIONS."""
    return [(title, i, code) for title in README_SECTIONS
            for i, code in enumerate(re.findall(r"^```python\n(.*?)^```", _readme_section(title),
                                                flags=re.M | re.S))]


def _trailing_comments(code: str) -> dict[int, str]:
    """Line number -> the comment that ends that line after some code."""
    comments, code_lines = {}, set()
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.ENDMARKER):
            code_lines.add(tok.start[0])
    return {line: c for line, c in comments.items() if line in code_lines}


@pytest.mark.parametrize("name", MODULES)
def test_readme_conventions_classify_every_public_name(name):
    """Every public name appears, in backticks, in the README's conventions section (its tables
    say what each function returns: per example, elementwise, a scalar, or state)."""
    body = _readme_section("Conventions of the math API")
    missing = [n for n in _module(name).__all__
               if not re.search(rf"`(?:genjax\.)?(?:{name}\.)?{re.escape(n)}[`(\[]", body)]
    assert missing == [], f"genjax.{name} names missing from README.md's conventions: {missing}"


def test_readme_math_sections_have_examples():
    titles = {title for title, _, _ in _readme_blocks()}
    assert titles == set(README_SECTIONS), sorted(titles)


@pytest.mark.parametrize("section, index, code",
                         [pytest.param(*b, id=f"{b[0].split()[0].lower()}-{b[1]}") for b in _readme_blocks()])
def test_readme_example_runs_and_states_true_values(section, index, code):
    namespace: dict = {"__name__": f"readme_{index}"}
    comments = _trailing_comments(code)
    checked = 0
    for stmt in ast.parse(code).body:
        if isinstance(stmt, ast.Expr):
            value = eval(compile(ast.Expression(stmt.value), "README.md", "eval"), namespace)  # noqa: S307
            match = _NUMBER.match(comments.get(stmt.end_lineno, ""))
            if match:
                stated, decimals = float(match.group(1)), len(match.group(2) or "")
                got = float(np.asarray(value))
                assert math.isclose(got, stated, abs_tol=0.5 * 10.0**-decimals + 1e-9), (
                    f"README section {section!r}: line {stmt.lineno} states {stated}, computes {got}")
                checked += 1
        else:
            exec(compile(ast.Module([stmt], type_ignores=[]), "README.md", "exec"), namespace)  # noqa: S102
    if section == "Reusing a loss in your own JAX code":
        assert checked >= 3  # the entropy, the cross-entropy and the Gaussian KL values
    if section == "Conventions of the math API":
        assert checked >= 1  # the ELBO value
