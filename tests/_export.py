"""Helpers shared by the export tests (tests/test_backend.py, tests/test_export.py): what a
program exported with `jax.export` holds, read from its StableHLO module.

`accelerator_problems(exported, ...)` is the check of a program exported for GPU and TPU from
this CPU host: the list of what would make it wrong there (empty when it is right), so that a
failing test prints every problem at once.
"""

from __future__ import annotations

import collections
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


def _signature(region) -> frozenset[str]:
    """What a region computes: each of its operations (nested ones included) by name, operand
    and result types and attributes, without constants and returns (empty: it only returns
    constants, as the `case` mapping a platform index to a branch index does). Read from the
    bindings, not printed: printing a nested operation numbers the values of the whole module."""
    out = set()
    for block in region.blocks:
        for child in block.operations:
            op = child.operation
            if op.name in ("stablehlo.return", "stablehlo.constant"):
                continue
            attributes = sorted(f"{name}={op.attributes[name]}" for name in op.attributes)
            types = [str(v.type) for v in op.operands] + ["->"] + [str(r.type) for r in op.results]
            out.add(" ".join([op.name, *types, *attributes]))
            for nested in op.regions:
                out |= _signature(nested)
    return frozenset(out)


def read(exported: jax.export.Exported) -> dict:
    """What the checks look at: custom-call targets; the `case` operations whose branches compute
    different things (each as the set of its branches' signatures); the element types of every
    result; and the operand element types of each `dot_general` and `convolution`.

    Lowered for several platforms, JAX emits a `case` on the platform index for every operation
    with a platform-specific lowering rule, and `platform_dependent` keeps one branch per group
    of platforms that share one. Branches that compute the same operations (`dot_general`'s) are
    not reported; those that differ may be JAX's own (max-pooling's gradient,
    `select_and_scatter_add`, is lowered one way for TPU and another for GPU), which is why
    `accelerator_problems` compares them with the plain program's."""
    targets, cases, types, dots, convs = [], [], set(), [], []
    for op in _operations(exported):
        name = op.name
        if name == "stablehlo.custom_call":
            targets.append(str(op.attributes["call_target_name"]).strip('"'))
        elif name == "stablehlo.case" and len(op.regions) > 1:
            branches = frozenset(_signature(r) for r in op.regions)
            if len(branches) > 1:
                cases.append(branches)
        elif name == "stablehlo.dot_general":
            dots.append(tuple(_element_type(v.type) for v in op.operands))
        elif name == "stablehlo.convolution":
            convs.append(tuple(_element_type(v.type) for v in op.operands))
        for r in op.results:
            types.add(_element_type(r.type))
    return {"custom_calls": targets, "diverging_cases": cases, "element_types": types - {None}, "dots": dots,
            "convs": convs}


def _element_type(t) -> str | None:
    m = re.fullmatch(r"tensor<(?:[0-9?]+x)*([a-z0-9]+)>", str(t))
    return m.group(1) if m else None


FLOAT_TYPES = ("f16", "bf16", "f32", "f64")


def accelerator_problems(exported: jax.export.Exported, plain: jax.export.Exported | None = None,
                         floats: Sequence[str] = ("f32",)) -> list[str]:
    """What is wrong with `exported` as a GPU/TPU program (empty: nothing). (Any object with
    `platforms` and `mlir_module()` will do, e.g. a program lowered with `jax.jit(f).lower`.)

    - it is not exported for exactly `ACCELERATORS`;
    - a custom call is CPU-only or a host callback (`HOST_OR_CPU_MARKERS`), or not one of the
      platform-neutral `NEUTRAL_CUSTOM_CALLS`;
    - a `case` has branches that compute different things, beyond those of `plain` (which has
      the per-platform lowerings JAX itself emits, e.g. a TPU and a GPU form of one operation):
      a `platform_dependent` whose CPU path survived (for GPU/TPU only the plain path may be left);
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
    diverging = collections.Counter(seen["diverging_cases"])
    if plain is not None:
        diverging -= collections.Counter(read(plain)["diverging_cases"])
    if diverging:
        problems.append(f"{diverging.total()} case(s) with branches that compute different things (a CPU path "
                        "left in)")
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
