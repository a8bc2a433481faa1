"""Helpers shared by the export tests (tests/test_backend.py, tests/test_export.py): what a
program exported with `jax.export` holds, read from its StableHLO module.

`accelerator_problems(exported, ...)` is the check of a program exported for GPU and TPU from
this CPU host: the list of what would make it wrong there (empty when it is right), so that a
failing test prints every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import jax

ACCELERATORS = ("tpu", "cuda")

# A custom call whose target names one of these runs on the host or only on XLA:CPU (a Python
# callback, a host transfer, XLA:CPU's YNNPACK/XNNPACK kernels): wrong in a GPU/TPU program.
HOST_OR_CPU_MARKERS = ("cpu", "callback", "host", "ynn", "xnn")
# Custom calls every backend implements (jax.export's own list of stable targets names them):
# the sharding annotations XLA's SPMD partitioner consumes. Anything else is reported, so that a
# new target is looked at before it is allowed.
NEUTRAL_CUSTOM_CALLS = frozenset({"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape"})

# Convolution dimension numbers as StableHLO prints them. NHWC x HWIO -> NHWC is the forward
# convolution, and the only form genjax's CPU path uses in the reverse pass; XLA's autodiff
# writes the weight gradient as a convolution contracting over the batch axis instead.
NHWC_CONV = "[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"
AUTODIFF_WEIGHT_GRAD = "[f, 0, 1, b]x[i, 0, 1, o]->[0, 1, b, f]"


def ops(module_text: str) -> list[str]:
    """The distinct operations of a StableHLO module, without SSA names, locations, constants,
    calls and the `case`/`return` of `platform_dependent` (one-branch cases per platform). A set,
    as a function called twice is emitted once or inlined depending on the program around it.
    Broadcasts of scalars are left out too: under AD each branch of `platform_dependent` (a
    `switch`) also returns the residuals of the others, filled with broadcast zeros, which XLA
    removes once the conditional is resolved."""
    out = []
    for line in module_text.splitlines():
        m = re.search(r"(stablehlo\.\w+|chlo\.\w+)(.*)", line)
        if not m or m.group(1) in ("stablehlo.case", "stablehlo.return", "stablehlo.constant") or "func.call" in line:
            continue
        rest = re.sub(r"loc\(.*?\)", "", m.group(2))
        if m.group(1) == "stablehlo.broadcast_in_dim" and re.search(r"\(tensor<[a-z0-9]+>\) ->", rest):
            continue
        out.append(m.group(1) + re.sub(r"%[\w#.]+", "%", rest).strip())
    return sorted(set(out))


def export(f, args: Sequence, platforms: Sequence[str] = ACCELERATORS, **options) -> jax.export.Exported:
    """`jax.export.export(jax.jit(f), platforms=platforms)(*args)`: tracing and lowering only."""
    return jax.export.export(jax.jit(f), platforms=tuple(platforms), **options)(*args)


def export_ops(f, args: Sequence, platform: str) -> list[str]:
    return ops(export(f, args, (platform,)).mlir_module())


def abstract(tree):
    """Every array leaf of `tree` as a `jax.ShapeDtypeStruct` (typed PRNG keys included)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "dtype") else x, tree)


# ------------------------------------------------------------------------- reading the module


def _operations(exported: jax.export.Exported) -> Iterator:
    """Every operation of the module, nested regions included (parsed with JAX's MLIR bindings,
    so that a `case` is read region by region, not by matching braces in text)."""
    from jax._src.interpreters import mlir
    from jax._src.lib.mlir import ir

    with mlir.make_ir_context() as context:
        module = ir.Module.parse(exported.mlir_module(), context=context)

        def walk(op):
            yield op
            for region in op.regions:
                for block in region.blocks:
                    for child in block.operations:
                        yield from walk(child.operation)

        yield from walk(module.operation)


def _computes(region) -> bool:
    """A region holding more than returns of constants (a branch that does work)."""
    return any(op.operation.name not in ("stablehlo.return", "stablehlo.constant")
               for block in region.blocks for op in block.operations)


def read(exported: jax.export.Exported) -> dict:
    """What the checks look at: custom-call targets, the `case` operations with two or more
    branches that compute (a dispatch whose alternatives both survived lowering), the element
    types of every result, and the operand element types of each `dot_general`."""
    targets, cases, types, dots = [], 0, set(), []
    for op in _operations(exported):
        name = op.name
        if name == "stablehlo.custom_call":
            targets.append(str(op.attributes["call_target_name"]).strip('"'))
        elif name == "stablehlo.case":
            cases += sum(_computes(r) for r in op.regions) >= 2
        elif name == "stablehlo.dot_general":
            dots.append(tuple(_element_type(v.type) for v in op.operands))
        for r in op.results:
            types.add(_element_type(r.type))
    return {"custom_calls": targets, "branching_cases": cases, "element_types": types - {None}, "dots": dots}


def _element_type(t) -> str | None:
    m = re.fullmatch(r"tensor<(?:[0-9?]+x)*([a-z0-9]+)>", str(t))
    return m.group(1) if m else None


FLOAT_TYPES = ("f16", "bf16", "f32", "f64")


def accelerator_problems(exported: jax.export.Exported, plain: jax.export.Exported | None = None,
                         floats: Sequence[str] = ("f32",)) -> list[str]:
    """What is wrong with `exported` as a GPU/TPU program (empty: nothing).

    - it is not exported for exactly `ACCELERATORS`;
    - a custom call is CPU-only or a host callback (`HOST_OR_CPU_MARKERS`), or not one of the
      platform-neutral `NEUTRAL_CUSTOM_CALLS`;
    - a `case` kept two branches that compute: a `platform_dependent` whose CPU path survived
      (for GPU/TPU only the plain path may be left);
    - with `plain` (the same function exported with every CPU workaround switched off,
      `genjax._backend.disabled("all")`): its operations differ from the plain program's;
    - it has a floating-point element type outside `floats`.
    """
    problems = []
    if tuple(exported.platforms) != ACCELERATORS:
        problems.append(f"exported for {exported.platforms}, not {ACCELERATORS}")
    seen = read(exported)
    for target in seen["custom_calls"]:
        if any(m in target.lower() for m in HOST_OR_CPU_MARKERS):
            problems.append(f"custom call {target!r} is CPU-only or a host callback")
        elif target not in NEUTRAL_CUSTOM_CALLS:
            problems.append(f"custom call {target!r} is not known to be platform-neutral")
    if seen["branching_cases"]:
        problems.append(f"{seen['branching_cases']} case(s) kept two computing branches (a CPU path left in)")
    if plain is not None:
        ours, theirs = set(ops(exported.mlir_module())), set(ops(plain.mlir_module()))
        if ours != theirs:
            only = sorted(ours - theirs)[:3]
            problems.append(f"not the plain program: {len(ours - theirs)} operation(s) only here (e.g. {only}), "
                            f"{len(theirs - ours)} only in the plain one")
    extra = sorted(t for t in seen["element_types"] if t in FLOAT_TYPES and t not in floats)
    if extra:
        problems.append(f"floating-point types {extra} beyond {list(floats)}")
    return problems


def convolutions(exported: jax.export.Exported) -> list[str]:
    """The dimension numbers of every convolution, as printed (`[b, 0, 1, f]x[0, 1, i, o]->...`)."""
    return re.findall(r"stablehlo\.convolution.*?dim_numbers = (\[[^\]]*\]x\[[^\]]*\]->\[[^\]]*\])",
                      exported.mlir_module())
