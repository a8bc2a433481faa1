"""Every benchmarked train step, every sampler and every public function of the six math modules
exports for TPU and GPU from this CPU host, and the exported programs are right there.

`jax.export.export(jax.jit(f), platforms=("tpu", "cuda"))` traces and lowers `f` for both
accelerators without one (nothing is compiled or run: inputs are `jax.ShapeDtypeStruct`s where
they can be). Each module is checked by `tests._export.accelerator_problems`: exported for exactly
those platforms, no CPU-only or host-callback custom call, no conditional that kept the CPU path
of a `genjax._backend` workaround beside the plain one, the same operations as the program
exported with every workaround switched off (`_backend.disabled("all")`: the plain JAX
expressions), and float32 throughout unless the config asks for bfloat16. The checks are shown
to fail on programs that are wrong in each of these ways (the last section).

References: the plain JAX program (the workarounds' documented plain paths, `genjax._backend`);
the walks' valid calls of every public name (tests/test_bad_inputs_*.py); the benchmark families
(benchmarks/_families.py).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import _families
from genjax import _backend, _samplers, autoencoders, diffusion, divergences, gan, train, vae, vq
from tests import _export as hx
from tests import test_bad_inputs_autoencoders as walk_ae
from tests import test_bad_inputs_diffusion as walk_df
from tests import test_bad_inputs_divergences as walk_dv
from tests import test_bad_inputs_gan as walk_gan
from tests import test_bad_inputs_vae as walk_vae
from tests import test_bad_inputs_vq as walk_vq
from tests.test_backend import W, X, _ours, _value_and_grad

K = 2  # fused steps per exported call
F32 = jnp.dtype(jnp.float32)
CONV_FAMILIES = ("dcgan", "vqvae", "ddpm_unet", "mnist_classifier")


def _both(f, args, **options):
    """(f exported for GPU/TPU, the same with every CPU workaround off: the plain program)."""
    exported = hx.export(f, args, **options)
    with _backend.disabled("all"):
        plain = hx.export(f, args, **options)
    return exported, plain


def _floating_avals(avals) -> set[str]:
    return {str(a.dtype) for a in jax.tree.leaves(avals) if jnp.issubdtype(a.dtype, jnp.floating)}


# ------------------------------------------------------------------------------ train steps


def _fused_step(fam: _families.Family):
    """`genjax.train.fuse_steps(step)` (the body `compile_fused` jits) and abstract (state, K batches)."""
    state = jax.eval_shape(fam.init, jax.random.key(0))
    batches = jax.eval_shape(lambda key: fam.batches(key, K), jax.random.key(1))
    return train.fuse_steps(fam.step), (state, batches)


@pytest.mark.parametrize("name", _families.FAMILIES)
def test_each_family_s_fused_step_exports_for_tpu_and_gpu_as_the_plain_float32_program(name):
    fam = _families.build_family(name)
    exported, plain = _both(*_fused_step(fam))
    assert hx.accelerator_problems(exported, plain) == []
    assert _floating_avals(exported.in_avals) == _floating_avals(exported.out_avals) == {"float32"}
    state, summary = jax.tree.unflatten(exported.out_tree, exported.out_avals)
    assert state.step.shape == () and {m.dtype for m in jax.tree.leaves(summary["mean"])} == {F32}
    if name in CONV_FAMILIES:
        # the weight gradients are XLA's autodiff convolutions (contracting over the batch), not
        # the CPU path's NHWC-only reverse pass (`conv_grad`, see tests/test_backend.py)
        assert hx.AUTODIFF_WEIGHT_GRAD in hx.convolutions(exported)


# the VQ-VAE's nearest-code search and codebook sums contract float32 latents on purpose (the
# distances decide the codes; see tests/test_benchmarks.py's operand count): its only float32 matmuls
FLOAT32_DOTS = {"vqvae": 2}


@pytest.mark.parametrize("name", _families.FAMILIES)
def test_each_family_in_bfloat16_exports_bf16_matmuls_with_float32_parameters_and_loss(name):
    fam = _families.build_family(name, dtype="bfloat16")
    exported, plain = _both(*_fused_step(fam))
    assert hx.accelerator_problems(exported, plain, floats=("f32", "bf16")) == []
    found = hx.read(exported)
    # forward and backward matmuls and convolutions in bfloat16 (the forward ones of the VQ-VAE's
    # two float32 contractions and their transposes aside)
    kernels = found["dots"] + found["convs"]
    mixed = [k for k in kernels if set(k) != {"bf16"}]
    assert kernels and len(mixed) <= 2 * FLOAT32_DOTS.get(name, 0), mixed
    assert all(set(k) == {"f32"} for k in mixed), mixed
    # master weights, optimizer state, inputs and the loss stay float32
    assert _floating_avals(exported.in_avals) == _floating_avals(exported.out_avals) == {"float32"}
    state, summary = jax.tree.unflatten(exported.out_tree, exported.out_avals)
    assert {p.dtype for p in jax.tree.leaves(state.params)} == {F32}
    assert {m.dtype for m in jax.tree.leaves(summary["mean"])} == {F32}


# ------------------------------------------------------------------------------- samplers

T, D, HIDDEN = 20, 4, 8
SCHEDULE = diffusion.make_schedule(diffusion.linear_beta_schedule(T))
PARAMS = {"w": jax.ShapeDtypeStruct((D, HIDDEN), jnp.float32), "emb": jax.ShapeDtypeStruct((T, HIDDEN), jnp.float32),
          "v": jax.ShapeDtypeStruct((HIDDEN, D), jnp.float32)}
RAW_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)  # jax.random.key_data of a key


def _denoiser(params, x, t):
    """A tiny MLP with a learned timestep embedding: `(x_t [B, D], t [B] int32) -> [B, D]`."""
    return jnp.tanh(x @ params["w"] + params["emb"][t]) @ params["v"]


def _sampler(name):
    def run(params, raw_key):
        key, model = jax.random.wrap_key_data(raw_key), (lambda x, t: _denoiser(params, x, t))
        if name == "ddim_sample":  # genjax.diffusion.ddim_sample (sample_with's "ddim" is the spaced one)
            return diffusion.ddim_sample(key, model, SCHEDULE, (3, D), num_steps=5, eta=0.5)
        steps = None if name == "ddpm" else 5  # ancestral sampling takes all T steps
        return diffusion.sample_with(key, model, SCHEDULE, (3, D), sampler=name, num_steps=steps)

    return run


@pytest.mark.parametrize("name", [*_samplers.SAMPLERS, "ddim_sample"])
def test_each_sampler_exports_for_tpu_and_gpu_as_the_plain_float32_program(name):
    exported, plain = _both(_sampler(name), (PARAMS, RAW_KEY))
    assert hx.accelerator_problems(exported, plain) == []
    assert exported.out_avals[0].shape == (3, D) and exported.out_avals[0].dtype == jnp.float32


# ------------------------------------------------------------- every public math function

MODULES = {"divergences": divergences, "gan": gan, "autoencoders": autoencoders, "vae": vae, "vq": vq,
           "diffusion": diffusion}
CONSTANTS = {"autoencoders.CORRUPTIONS", "vae.LIKELIHOODS"}


def _valid_calls() -> dict[str, tuple]:
    """`module.name` -> (function, keyword arguments of a valid call), from the bad-input walks."""
    calls = {f"divergences.{n}": (s.fn, {**s.arrays, **s.statics}) for n, s in walk_dv.SPECS.items()}
    for n, (fn, kwargs) in walk_gan.CALLS.items():  # `state=None` there stands for a fresh state
        calls[f"gan.{n}"] = (fn, {**kwargs, **({"state": walk_gan._state()} if kwargs.get("state", 0) is None else {})})
    calls.update({f"autoencoders.{n}": (getattr(autoencoders, n), kw) for n, kw in walk_ae.GOOD.items()})
    calls.update({f"vae.{n}": (getattr(vae, n), kw) for n, kw in walk_vae.GOOD.items()})
    calls.update({f"vq.{n}": call for n, call in walk_vq.CALLS.items()})
    calls.update({f"diffusion.{n}": call for n, call in walk_df.CALLS.items()})
    return calls


CALLS = _valid_calls()


def test_every_public_name_of_the_math_modules_is_exported():
    public = {f"{m}.{n}" for m, mod in MODULES.items() for n in mod.__all__} - CONSTANTS
    assert set(CALLS) == public


def _traced_call(fn, kwargs):
    """`fn(**kwargs)` as a function of the kwargs' JAX arrays (typed keys included), and those
    arrays, abstract; everything else (Python numbers, shapes, functions, NumPy arrays such as
    the betas a schedule is built from on the host) stays static."""
    leaves, tree = jax.tree.flatten(kwargs)
    where = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array)]

    def f(*arrays):
        filled = list(leaves)
        for i, a in zip(where, arrays):
            filled[i] = a
        return fn(**jax.tree.unflatten(tree, filled))

    return f, hx.abstract([leaves[i] for i in where])


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_public_function_exports_for_tpu_and_gpu_as_the_plain_float32_program(name):
    exported, plain = _both(*_traced_call(*CALLS[name]))
    assert hx.accelerator_problems(exported, plain) == []


# ------------------------------------------------------------------- the checks can fail


@dataclasses.dataclass(frozen=True)
class _Lowered:
    """A lowered program where `accelerator_problems` takes an `Exported`."""

    platforms: tuple[str, ...]
    text: str

    def mlir_module(self) -> str:
        return self.text


def test_the_check_flags_a_host_callback_lowered_for_cpu():
    def f(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    x = jax.ShapeDtypeStruct((3,), jnp.float32)
    # jax.export refuses host callbacks itself (jax 0.10), for several platforms and for one
    with pytest.raises(NotImplementedError, match="multi-platform lowering for python_callback"):
        hx.export(f, (x,))
    with pytest.raises(NotImplementedError, match="serialization of host_callbacks"):
        hx.export(f, (x,), ("cpu",))
    lowered = _Lowered(("cpu",), jax.jit(f).trace(x).lower(lowering_platforms=("cpu",)).as_text())
    assert hx.accelerator_problems(lowered) == [
        "exported for ('cpu',), not ('tpu', 'cuda')",
        "custom call 'xla_ffi_python_cpu_callback' is CPU-only or a host callback",  # jax 0.10's target
    ]


def test_the_check_flags_a_custom_call_it_does_not_know():
    def f(x):  # a foreign kernel (never registered: lowering does not need it, compiling would)
        return jax.ffi.ffi_call("genjax_test_kernel", jax.ShapeDtypeStruct(x.shape, x.dtype))(x)

    x = jax.ShapeDtypeStruct((3,), jnp.float32)
    lowered = _Lowered(hx.ACCELERATORS, jax.jit(f).trace(x).lower(lowering_platforms=hx.ACCELERATORS).as_text())
    assert hx.accelerator_problems(lowered) == ["custom call 'genjax_test_kernel' is not known to be platform-neutral"]


_conv_value_and_grad = _value_and_grad(_ours)  # genjax.nn.conv2d and its gradients, from tests/test_backend.py
CONV_ARGS = hx.abstract((X, W))


def test_the_check_flags_the_cpu_path_of_a_convolution():
    exported, plain = _both(_conv_value_and_grad, CONV_ARGS)
    assert hx.accelerator_problems(exported, plain) == []
    assert hx.AUTODIFF_WEIGHT_GRAD in hx.convolutions(exported)
    # exported for CPU as well: both paths kept behind a conditional on the platform
    both = hx.export(_conv_value_and_grad, CONV_ARGS, ("cpu", "tpu", "cuda"))
    assert any(p.endswith("case(s) with branches that compute different things (a CPU path left in)")
               for p in hx.accelerator_problems(both))
    # for CPU alone: the CPU path (NHWC convolutions only), not the plain program
    cpu, cpu_plain = _both(_conv_value_and_grad, CONV_ARGS, platforms=("cpu",))
    problems = hx.accelerator_problems(cpu, cpu_plain)
    assert problems[0] == "exported for ('cpu',), not ('tpu', 'cuda')"
    assert problems[1].startswith("not the plain program:") and len(problems) == 2
    assert set(hx.convolutions(cpu)) == {hx.NHWC_CONV}


def test_the_check_flags_bfloat16_in_a_float32_program():
    exported = hx.export(*_fused_step(_families.build_family("vae_mlp", dtype="bfloat16")))
    assert hx.accelerator_problems(exported) == ["floating-point types ['bf16'] beyond ['f32']"]
