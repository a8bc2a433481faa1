"""Bad and extreme inputs for every public name of genjax.diffusion (issue 15).

The walk: each public name has a valid call (`CALLS`), and every case below replaces one argument
of it. A case asserts either a clear error (a ValueError/TypeError whose message names the
argument, in backticks) or a finite result with a finite gradient. `test_the_walk_covers_all`
asserts that every name of `diffusion.__all__` is walked by every kind of case that applies to it.
A short schedule (T = 20) keeps the samplers cheap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import diffusion as df
from tests import _walk as walk

T = 20
SCHED = df.make_schedule(df.linear_beta_schedule(T))
COS = df.make_schedule(df.cosine_beta_schedule(T))
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32)  # [B, D]
N = jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32)
KEY = jax.random.key(0)


def zero_eps(x, t):
    return jnp.zeros_like(x)


def _schedule_from_fields(**fields):
    return df.q_sample(df.Schedule(**fields), X, 3, N)


# name -> (function, the keyword arguments of a valid call). Schedule, a state class, is walked
# through its use: a Schedule built from bad fields is given to q_sample.
CALLS = {
    "Schedule": (_schedule_from_fields, {f: getattr(SCHED, f) for f in SCHED.__dataclass_fields__}),
    "linear_beta_schedule": (df.linear_beta_schedule, dict(num_timesteps=T, beta_start=1e-4, beta_end=0.02)),
    "cosine_beta_schedule": (df.cosine_beta_schedule, dict(num_timesteps=T, s=0.008, max_beta=0.999)),
    "make_schedule": (lambda **a: df.make_schedule(**a).alphas_cumprod, dict(betas=np.full(T, 0.01))),
    "q_step": (df.q_step, dict(schedule=SCHED, x_prev=X, t=3, noise=N)),
    "q_sample": (df.q_sample, dict(schedule=SCHED, x0=X, t=3, noise=N)),
    "q_posterior": (lambda **a: df.q_posterior(**a)[0], dict(schedule=SCHED, x0=X, xt=N, t=3)),
    "predict_x0": (df.predict_x0, dict(schedule=SCHED, xt=X, t=3, eps=N)),
    "predict_eps": (df.predict_eps, dict(schedule=SCHED, xt=X, t=3, x0=N)),
    "v_target": (df.v_target, dict(schedule=SCHED, x0=X, t=3, noise=N)),
    "to_eps_fn": (lambda xt=X, t=3, **a: df.to_eps_fn(**a)(xt, t), dict(model_fn=zero_eps, schedule=SCHED,
                                                                      prediction="v")),
    "ddpm_loss": (df.ddpm_loss, dict(key=KEY, eps_fn=zero_eps, schedule=SCHED, x0=X, prediction="epsilon")),
    "ddpm_step": (df.ddpm_step, dict(key=KEY, schedule=SCHED, eps=N, xt=X, t=3, variance="fixed_small",
                                     clip_x0=None)),
    "sample": (df.sample, dict(key=KEY, eps_fn=zero_eps, schedule=SCHED, shape=(3, 2), variance="fixed_small",
                               clip_x0=None, return_trajectory=False)),
    "ddim_timesteps": (df.ddim_timesteps, dict(num_timesteps=T, num_steps=5)),
    "ddim_step": (df.ddim_step, dict(schedule=SCHED, eps=N, xt=X, t=8, t_prev=4, eta=0.5, key=KEY, clip_x0=None,
                                     use_clipped_model_output=False)),
    "ddim_sample": (df.ddim_sample, dict(key=KEY, eps_fn=zero_eps, schedule=SCHED, shape=(3, 2), num_steps=5,
                                         eta=0.0, clip_x0=None, use_clipped_model_output=False,
                                         return_trajectory=False)),
}

REAL_ARRAYS = {
    "q_step": ["x_prev", "noise"], "q_sample": ["x0", "noise"], "q_posterior": ["x0", "xt"],
    "predict_x0": ["xt", "eps"], "predict_eps": ["xt", "x0"], "v_target": ["x0", "noise"], "to_eps_fn": ["xt"],
    "ddpm_loss": ["x0"], "ddpm_step": ["eps", "xt"], "ddim_step": ["eps", "xt"], "make_schedule": ["betas"],
}
TIMESTEPS = {"q_step": ["t"], "q_sample": ["t"], "q_posterior": ["t"], "predict_x0": ["t"], "predict_eps": ["t"],
             "v_target": ["t"], "to_eps_fn": ["t"], "ddpm_step": ["t"], "ddim_step": ["t", "t_prev"]}
SCHEDULES = {n: "schedule" for n in ("q_step", "q_sample", "q_posterior", "predict_x0", "predict_eps", "v_target",
                                     "to_eps_fn", "ddpm_loss", "ddpm_step", "sample", "ddim_step", "ddim_sample")}
KEYS = {"ddpm_loss": "key", "ddpm_step": "key", "sample": "key", "ddim_sample": "key", "ddim_step": "key"}
CALLABLES = {"to_eps_fn": "model_fn", "ddpm_loss": "eps_fn", "sample": "eps_fn", "ddim_sample": "eps_fn"}
CHOICES = {"to_eps_fn": "prediction", "ddpm_loss": "prediction", "ddpm_step": "variance", "sample": "variance"}
CLIPS = {"ddpm_step": "clip_x0", "sample": "clip_x0", "ddim_step": "clip_x0", "ddim_sample": "clip_x0"}
FLAGS = {"sample": ["return_trajectory"], "ddim_step": ["use_clipped_model_output"],
         "ddim_sample": ["use_clipped_model_output", "return_trajectory"]}
SHAPES = {"sample": "shape", "ddim_sample": "shape"}
STATIC_NUMBERS = {  # name -> {argument: out-of-range values}; NaN, strings, bools, None added
    "linear_beta_schedule": {"beta_start": (0.0, 1.0, -0.1), "beta_end": (0.0, 1.0, 2.0)},
    "cosine_beta_schedule": {"s": (-0.1, float("inf")), "max_beta": (0.0, 1.0, 1.5)},
    "ddim_step": {"eta": (-0.5, float("inf"))},
    "ddim_sample": {"eta": (-0.5, float("inf"))},
}
STATIC_INTS = {"linear_beta_schedule": {"num_timesteps": 1}, "cosine_beta_schedule": {"num_timesteps": 1},
               "ddim_timesteps": {"num_timesteps": 5, "num_steps": 1}, "ddim_sample": {"num_steps": 1}}
WRONG_SHAPES = {
    "Schedule": [("betas", jnp.zeros((T, 2))), ("betas", jnp.zeros((0,)))],
    "make_schedule": [("betas", np.full((2, 3), 0.1)), ("betas", np.zeros((0,)))],
    "q_step": [("noise", jnp.zeros((3, 3))), ("x_prev", jnp.zeros(()))],
    "q_sample": [("noise", jnp.zeros((2, 2))), ("t", jnp.zeros((2,), jnp.int32))],
    "q_posterior": [("xt", jnp.zeros((3, 2, 1)))],
    "predict_x0": [("eps", jnp.zeros((3,)))],
    "predict_eps": [("x0", jnp.zeros((1, 2)))],
    "v_target": [("t", jnp.zeros((3, 1), jnp.int32))],
    "to_eps_fn": [("t", jnp.zeros((4,), jnp.int32))],
    "ddpm_loss": [("x0", jnp.zeros(()))],
    "ddpm_step": [("eps", jnp.zeros((3, 3)))],
    "sample": [("shape", ())],
    "ddim_timesteps": [("num_steps", T + 1)],
    "ddim_step": [("t_prev", jnp.zeros((2,), jnp.int32)), ("eps", jnp.zeros((1, 2)))],
    "ddim_sample": [("shape", ()), ("num_steps", T + 1)],
}
EMPTY = {n: {a: jnp.zeros((0, 2)) for a in args} for n, args in REAL_ARRAYS.items() if n != "make_schedule"}
EMPTY["sample"] = dict(shape=(0, 2))
EMPTY["ddim_sample"] = dict(shape=(0, 2))
NOT_BATCHED = {"Schedule", "linear_beta_schedule", "cosine_beta_schedule", "make_schedule", "ddim_timesteps"}

# The fast samplers, zero-terminal-SNR schedules and min-SNR weighting (issue 18, genjax._samplers).
_FAST_SAMPLERS = ("dpmpp_2m_sample", "euler_sample", "heun_sample", "ddim_spaced_sample", "sample_with")
CALLS.update({
    "rescale_zero_terminal_snr": (df.rescale_zero_terminal_snr, dict(betas=np.full(T, 0.01))),
    "zero_terminal_snr_schedule": (lambda **a: df.zero_terminal_snr_schedule(**a).alphas_cumprod,
                                   dict(betas=np.full(T, 0.01))),
    "karras_sigmas": (df.karras_sigmas, dict(num_steps=5, sigma_min=0.01, sigma_max=10.0, rho=7.0)),
    "spaced_timesteps": (df.spaced_timesteps, dict(num_timesteps=T, num_steps=5, spacing="trailing",
                                                   steps_offset=0)),
    "min_snr_weight": (df.min_snr_weight, dict(schedule=SCHED, t=3, gamma=5.0, prediction="v")),
    "min_snr_loss": (df.min_snr_loss, dict(key=KEY, model_fn=zero_eps, schedule=SCHED, x0=X, prediction="v",
                                           gamma=5.0)),
    **{n: (getattr(df, n), dict(key=KEY, model_fn=zero_eps, schedule=SCHED, shape=(3, 2), num_steps=5,
                                prediction="v", return_trajectory=False)) for n in _FAST_SAMPLERS},
})
REAL_ARRAYS.update({"rescale_zero_terminal_snr": ["betas"], "zero_terminal_snr_schedule": ["betas"],
                    "min_snr_loss": ["x0"]})
TIMESTEPS.update({"min_snr_weight": ["t"]})
SCHEDULES.update({n: "schedule" for n in _FAST_SAMPLERS + ("min_snr_weight", "min_snr_loss")})
KEYS.update({n: "key" for n in _FAST_SAMPLERS + ("min_snr_loss",)})
CALLABLES.update({n: "model_fn" for n in _FAST_SAMPLERS + ("min_snr_loss",)})
CHOICES.update({**{n: "prediction" for n in _FAST_SAMPLERS + ("min_snr_weight", "min_snr_loss")},
                "spaced_timesteps": "spacing"})
FLAGS.update({n: ["return_trajectory"] for n in _FAST_SAMPLERS})
SHAPES.update({n: "shape" for n in _FAST_SAMPLERS})
STATIC_NUMBERS.update({
    "karras_sigmas": {"sigma_min": (0.0, -1.0, float("inf")), "sigma_max": (0.0, float("inf")), "rho": (0.0, -1.0)},
    "min_snr_weight": {"gamma": (0.0, -1.0, float("inf"))},
    "min_snr_loss": {"gamma": (0.0, -1.0)},
    "ddim_spaced_sample": {"eta": (-0.5, float("inf"))},
})
STATIC_INTS.update({"karras_sigmas": {"num_steps": 1}, "spaced_timesteps": {"num_timesteps": 5, "num_steps": 1},
                    **{n: {"num_steps": 1} for n in _FAST_SAMPLERS if n != "sample_with"}})
WRONG_SHAPES.update({
    "rescale_zero_terminal_snr": [("betas", np.full((2, 3), 0.1)), ("betas", np.full((1,), 0.1))],
    "zero_terminal_snr_schedule": [("betas", np.zeros((0,)))],
    "karras_sigmas": [("sigma_min", jnp.zeros((2,)))],
    "spaced_timesteps": [("num_steps", T + 1)],
    "min_snr_weight": [("t", jnp.zeros((3, 1), jnp.int32))],
    "min_snr_loss": [("x0", jnp.zeros(()))],
    **{n: [("shape", ())] for n in _FAST_SAMPLERS},
    "dpmpp_2m_sample": [("shape", ()), ("num_steps", T + 1)],
    "ddim_spaced_sample": [("shape", ()), ("num_steps", T + 1)],
})
EMPTY.update({"min_snr_loss": dict(x0=jnp.zeros((0, 2))), "min_snr_weight": dict(t=jnp.zeros((0,), jnp.int32)),
              **{n: dict(shape=(0, 2)) for n in _FAST_SAMPLERS}})
NOT_BATCHED |= {"rescale_zero_terminal_snr", "zero_terminal_snr_schedule", "karras_sigmas", "spaced_timesteps"}
# walked for extreme values in tests/test_diffusion_samplers.py (finite at zero terminal SNR) instead
NO_EXTREME = set(_FAST_SAMPLERS) | {"min_snr_weight", "min_snr_loss"}


# Learned variances (issue 18, genjax._learned_variance): a model returning (prediction, v).
def learned_pair(x, t):
    return jnp.zeros_like(x), jnp.full_like(x, 0.5)


_LEARNED = ("discretized_gaussian_log_likelihood", "learned_log_variance", "vlb_term", "hybrid_loss", "respace",
            "learned_variance_sample")
Z = jnp.zeros((3, 2))
CALLS.update({
    "discretized_gaussian_log_likelihood": (df.discretized_gaussian_log_likelihood,
                                            dict(x=X, mean=N, log_scale=Z, num_bins=256)),
    "learned_log_variance": (df.learned_log_variance, dict(schedule=SCHED, t=3, v=X)),
    "vlb_term": (df.vlb_term, dict(schedule=SCHED, x0=X, xt=N, t=3, mean=N, log_variance=Z)),
    "hybrid_loss": (df.hybrid_loss, dict(key=KEY, model_fn=learned_pair, schedule=SCHED, x0=X, vlb_weight=0.001,
                                         prediction="v")),
    # the schedule is read on the host: a keyword default, so that the export test keeps it concrete
    "respace": (lambda schedule=SCHED, **a: df.respace(schedule, **a).alphas_cumprod,
                dict(timesteps=np.arange(0, T, 4))),
    "learned_variance_sample": (lambda schedule=SCHED, **a: df.learned_variance_sample(schedule=schedule, **a),
                                dict(key=KEY, model_fn=learned_pair,
                                                                 shape=(3, 2), num_steps=5, prediction="v",
                                                                 return_trajectory=False)),
})
REAL_ARRAYS.update({"discretized_gaussian_log_likelihood": ["x", "mean", "log_scale"], "learned_log_variance": ["v"],
                    "vlb_term": ["x0", "xt", "mean", "log_variance"], "hybrid_loss": ["x0"]})
TIMESTEPS.update({"learned_log_variance": ["t"], "vlb_term": ["t"]})
SCHEDULES.update({n: "schedule" for n in _LEARNED if n != "discretized_gaussian_log_likelihood"})
KEYS.update({"hybrid_loss": "key", "learned_variance_sample": "key"})
CALLABLES.update({"hybrid_loss": "model_fn", "learned_variance_sample": "model_fn"})
CHOICES.update({"hybrid_loss": "prediction", "learned_variance_sample": "prediction"})
FLAGS.update({"learned_variance_sample": ["return_trajectory"]})
SHAPES.update({"learned_variance_sample": "shape"})
STATIC_NUMBERS.update({"hybrid_loss": {"vlb_weight": (-1.0, float("inf"))}})
WRONG_SHAPES.update({
    "discretized_gaussian_log_likelihood": [("mean", jnp.zeros((4, 5)))],
    "learned_log_variance": [("t", jnp.zeros((3, 1), jnp.int32))],
    "vlb_term": [("mean", jnp.zeros((1, 2)))],
    "hybrid_loss": [("x0", jnp.zeros(()))],
    "respace": [("timesteps", np.zeros((2, 2), np.int32))],
    "learned_variance_sample": [("shape", ()), ("num_steps", T + 1)],
})
EMPTY.update({"discretized_gaussian_log_likelihood": dict(x=jnp.zeros((0, 2)), mean=jnp.zeros((0, 2)),
                                                          log_scale=jnp.zeros((0, 2))),
              "learned_log_variance": dict(v=jnp.zeros((0, 2))),
              "vlb_term": {a: jnp.zeros((0, 2)) for a in ("x0", "xt", "mean", "log_variance")},
              "hybrid_loss": dict(x0=jnp.zeros((0, 2))), "learned_variance_sample": dict(shape=(0, 2))})
NOT_BATCHED |= {"respace"}
# walked for extreme values in tests/test_learned_variance.py (finite at extreme scales) instead
NO_EXTREME |= set(_LEARNED)

def _call(name, **override):
    return walk.call(CALLS, name, **override)


def _raises(exc, arg, name, **override):
    walk.raises(CALLS, exc, arg, name, **override)


_finite = walk.finite


def test_the_walk_covers_all_public_names():
    public = set(df.__all__)
    assert set(CALLS) == public, (f"walk these new public names too: {sorted(public - set(CALLS))}; "
                                  f"no longer public: {sorted(set(CALLS) - public)}")
    checked_arguments = (set(REAL_ARRAYS) | set(TIMESTEPS) | set(SCHEDULES) | set(STATIC_NUMBERS)
                         | set(STATIC_INTS) | {"Schedule"})
    assert checked_arguments == public, public - checked_arguments
    assert set(WRONG_SHAPES) | {"linear_beta_schedule", "cosine_beta_schedule"} == public
    assert set(EMPTY) | NOT_BATCHED == public
    assert set(EXTREME) | NOT_BATCHED | {"sample", "ddim_sample", "ddpm_loss"} | NO_EXTREME == public


def test_every_valid_call_runs():
    for name in CALLS:
        assert _finite(_call(name)), name


# ---------------------------------------------------------------------------- wrong dtypes

BAD_REAL = [("complex", jnp.ones((3, 2), jnp.complex64)), ("string", "abc"), ("None", None),
            ("strings", np.array([["a", "b"]] * 3))]


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in REAL_ARRAYS.items() for a in args])
@pytest.mark.parametrize("label,bad", BAD_REAL, ids=[b[0] for b in BAD_REAL])
def test_real_arrays_reject_complex_strings_and_none(name, arg, label, bad):
    _raises(TypeError, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in TIMESTEPS.items() for a in args])
@pytest.mark.parametrize("bad", [3.0, "3", None, True, jnp.array([1.0, 2.0, 3.0])],
                         ids=["float", "string", "None", "bool", "float array"])
def test_timesteps_must_be_integers(name, arg, bad):
    _raises(TypeError, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in TIMESTEPS.items() for a in args])
@pytest.mark.parametrize("bad", [T, T + 7, -2, 10**6, np.array([0, 1, T])], ids=["T", "T+7", "-2", "1e6", "[0,1,T]"])
def test_concrete_timesteps_out_of_range_are_errors(name, arg, bad):
    override = {arg: bad}
    if arg == "t_prev":  # t_prev in [-1, t): -1 is the end of the chain, so -2 is the first bad one
        override["t"] = T - 1
    _raises(ValueError, arg, name, **override)


@pytest.mark.parametrize("name,arg", sorted(SCHEDULES.items()))
@pytest.mark.parametrize("bad", [None, np.ones(T), {"betas": SCHED.betas}], ids=["None", "array", "dict"])
def test_schedules_must_be_schedules(name, arg, bad):
    _raises(TypeError, arg, name, **{arg: bad})


@pytest.mark.parametrize("bad", [None, 0, "key", jnp.zeros((3,), jnp.uint32), jax.random.split(KEY, 2)],
                         ids=["None", "int", "string", "uint32[3]", "two keys"])
@pytest.mark.parametrize("name,arg", sorted(KEYS.items()))
def test_keys_are_required_and_checked(name, arg, bad):
    _raises((TypeError, ValueError), arg, name, **{arg: bad})


def test_ddim_step_needs_no_key_only_at_eta_zero():
    """The listed exception to "key first": key=None is fine for eta = 0 and a TypeError otherwise."""
    assert _finite(_call("ddim_step", eta=0.0, key=None))
    for eta in (0.5, 1e-8, jnp.float32(0.0)):  # a traced or array eta cannot be known to be 0
        _raises(TypeError, "key", "ddim_step", eta=eta, key=None)


@pytest.mark.parametrize("name,arg", sorted(CALLABLES.items()))
@pytest.mark.parametrize("bad", [None, 3, "eps"], ids=["None", "int", "string"])
def test_denoisers_must_be_callables(name, arg, bad):
    _raises(TypeError, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", sorted(CHOICES.items()))
@pytest.mark.parametrize("bad", ["learned", "", None, 0, "Epsilon"])
def test_choices_must_be_one_of_the_options(name, arg, bad):
    _raises(ValueError, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", sorted(CLIPS.items()))
@pytest.mark.parametrize("bad,exc", [((1.0, -1.0), ValueError), ((1.0, 1.0), ValueError),
                                     ((float("nan"), 1.0), ValueError), ((-1.0,), ValueError),
                                     ("ab", ValueError), (1.0, ValueError), (("-1", "1"), TypeError),
                                     ((False, True), TypeError), ((None, 1.0), TypeError)])
def test_clip_ranges_are_pairs_low_below_high(name, arg, bad, exc):
    _raises(exc, arg, name, **{arg: bad})


def test_clip_ranges_may_be_one_sided():
    assert _finite(_call("ddpm_step", clip_x0=(0.0, float("inf"))))


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in FLAGS.items() for a in args])
@pytest.mark.parametrize("bad", [1, "False", None], ids=["1", "False-string", "None"])
def test_flags_are_python_bools(name, arg, bad):
    _raises(TypeError, arg, name, **{arg: bad})


@pytest.mark.parametrize("name,arg", sorted(SHAPES.items()))
@pytest.mark.parametrize("bad,exc", [((2.5, 2), TypeError), ((3.0, 2), TypeError), ((True, 2), TypeError),
                                     (("3", 2), TypeError), ((3, -2), ValueError), (None, TypeError)])
def test_shapes_are_tuples_of_ints_never_truncated(name, arg, bad, exc):
    _raises(exc, arg, name, **{arg: bad})


def test_integer_data_is_promoted_as_the_shared_policy_says():
    """genjax._checks: integer and boolean data become float32: the float call's result."""
    x_int = jnp.array([[1, 2], [3, 4]])
    np.testing.assert_allclose(df.q_sample(SCHED, x_int, 3, jnp.zeros((2, 2), jnp.int32)),
                               df.q_sample(SCHED, x_int.astype(jnp.float32), 3, jnp.zeros((2, 2))), rtol=1e-6)
    assert df.predict_x0(SCHED, x_int, 0, x_int).dtype == jnp.float32


# ---------------------------------------------------------------------------- wrong shapes


@pytest.mark.parametrize("name,arg,bad", [(n, a, v) for n, cases in WRONG_SHAPES.items() for a, v in cases])
def test_wrong_shapes_are_errors_naming_the_argument(name, arg, bad):
    named = "schedule" if name == "Schedule" else arg
    _raises(ValueError, named, name, **{arg: bad})


def test_bad_betas():
    for bad in ([0.1, float("nan")], [0.1, 1.0], [0.0, 0.1], [-0.1], [True, False]):
        with pytest.raises(ValueError, match="beta"):
            df.make_schedule(bad)
    for bad in ("0.1", None, [0.1, "a"], np.array([0.1 + 1j])):
        _raises(TypeError, "betas", "make_schedule", betas=bad)
    with pytest.raises(ValueError, match="not finite"):
        df.make_schedule(np.full(1, 1e-30))  # 1 - abar_0 rounds to 0: the posterior coefficients divide by 0


# ---------------------------------------------------------------------------- static arguments

GENERIC_BAD_NUMBERS = [(float("nan"), ValueError), ("0.3", TypeError), (True, TypeError), (False, TypeError),
                       (None, TypeError), (jnp.zeros((2,)), ValueError)]


@pytest.mark.parametrize("name,arg,bad,exc", [
    (n, a, v, e) for n, args in STATIC_NUMBERS.items() for a, out in args.items()
    for v, e in [(o, ValueError) for o in out] + GENERIC_BAD_NUMBERS])
def test_static_numbers_outside_their_domain_are_errors(name, arg, bad, exc):
    _raises(exc, arg, name, **{arg: bad})


def test_beta_start_must_not_exceed_beta_end():
    _raises(ValueError, "beta_start", "linear_beta_schedule", beta_start=0.02, beta_end=0.01)
    assert df.linear_beta_schedule(4, 0.01, 0.01).tolist() == [0.01] * 4  # equal is a constant schedule


def test_schedule_numbers_must_be_concrete():
    with pytest.raises(TypeError, match="`beta_end` must be a concrete number"):
        jax.jit(lambda b: jnp.asarray(df.linear_beta_schedule(5, beta_end=b)))(0.02)


@pytest.mark.parametrize("name", ["ddim_step", "ddim_sample"])
def test_eta_may_be_traced_and_is_clipped_at_zero(name):
    run = jax.jit(lambda eta: _call(name, eta=eta))
    np.testing.assert_allclose(run(jnp.float32(-3.0)), run(jnp.float32(0.0)), rtol=1e-6)
    assert _finite(run(jnp.float32(2.0)))  # eta > 1: the direction term is clamped, not NaN


@pytest.mark.parametrize("name,arg,good", [(n, a, g) for n, args in STATIC_INTS.items() for a, g in args.items()])
@pytest.mark.parametrize("bad,exc", [(2.5, TypeError), (True, TypeError), ("5", TypeError), (None, TypeError),
                                     (np.float32(5.0), TypeError), (0, ValueError), (-1, ValueError)])
def test_static_integers_are_python_ints_never_truncated(name, arg, good, bad, exc):
    _raises(exc, arg, name, **{arg: bad})
    assert _finite(_call(name, **{arg: np.int64(good)}))  # NumPy integers are ints


# ---------------------------------------------------------------------------- empty batches


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_empty_batches_give_empty_results(name):
    out = _call(name, **EMPTY[name])
    assert _finite(out) and jnp.shape(out)[0] == 0


# ---------------------------------------------------------------------------- extreme values

EXTREME = ["q_step", "q_sample", "q_posterior", "predict_x0", "predict_eps", "v_target", "to_eps_fn",
           "ddpm_step", "ddim_step"]


def _output_and_grads(name, dtype, scale, sched, t):
    """The output of `name` at data and noise of magnitude `scale` in `dtype`, and the gradient
    of its float32 sum in every array argument."""
    args = {**CALLS[name][1], "schedule": sched, "t": t}
    if name == "ddim_step":
        args["t_prev"] = t - 1 if t > 0 else -1
    arrays = REAL_ARRAYS[name]
    values = [(v * scale).astype(dtype) for v in (X, N)][: len(arrays)]

    def call(*values):
        return _call(name, **{**args, **dict(zip(arrays, values))})

    grads = jax.grad(lambda *v: jnp.sum(call(*v).astype(jnp.float32)), argnums=tuple(range(len(arrays))))(*values)
    return call(*values), call(*[v.astype(jnp.float32) for v in values]), grads


@pytest.mark.parametrize("name", EXTREME)
@pytest.mark.parametrize("dtype,scale", [(jnp.float32, 1e4), (jnp.float32, -1e4), (jnp.bfloat16, 1e4),
                                         (jnp.float16, 1e3), (jnp.float16, 1e-4)],
                         ids=["f32+1e4", "f32-1e4", "bf16+1e4", "f16x1e3", "f16x1e-4"])
@pytest.mark.parametrize("t", [0, T - 1])
def test_extreme_values_give_finite_values_and_gradients(name, dtype, scale, t):
    """At both ends of the chain, including the cosine schedule's last step (abar ~ 1e-5 at T = 20,
    1 / sqrt(abar) ~ 300). Every gradient is finite. Every output is finite where its true value
    (the same call on the inputs upcast to float32) is representable in the input dtype; float16
    holds at most 65504, so x0_hat = 1e3 / sqrt(abar) is inf there, as float16 arithmetic says,
    while the steps that go through it (ddpm_step, ddim_step) compute it in float32 and stay finite."""
    for sched in (SCHED, COS):
        out, ref, grads = _output_and_grads(name, dtype, scale, sched, t)
        assert out.dtype == dtype and _finite(grads)
        out, ref = np.asarray(out, np.float32), np.asarray(ref, np.float64)
        representable = np.abs(ref) < float(jnp.finfo(dtype).max) * 0.99
        assert np.all(np.isfinite(out[representable])), (sched, name)
        assert np.all(np.isinf(out[~representable]))
        if name in ("ddpm_step", "ddim_step"):
            assert representable.all()


def test_samplers_and_loss_are_finite_with_a_saturating_denoiser():
    """A denoiser predicting +-1e4 (far outside N(0, 1)) with the data range clipped: finite samples,
    a finite loss and gradient."""
    def big(x, t):
        return jnp.where(x > 0, 1e4, -1e4) * jnp.ones_like(x)

    for out in (df.sample(KEY, big, COS, (3, 2), clip_x0=(-1.0, 1.0)),
                df.ddim_sample(KEY, big, COS, (3, 2), 5, eta=1.0, clip_x0=(-1.0, 1.0)),
                df.ddpm_loss(KEY, big, COS, X)):
        assert _finite(out)
    g = jax.grad(lambda s: jnp.sum(df.ddpm_loss(KEY, lambda x, t: s * x, COS, X * 1e4)))(jnp.float32(1.0))
    assert _finite(g)


@pytest.mark.parametrize("dtype,scale", [(jnp.float32, 1e4), (jnp.bfloat16, 1e4), (jnp.float16, 1e2)],
                         ids=["f32", "bf16", "f16"])
def test_ddpm_loss_value_and_gradient_are_finite_for_extreme_half_precision_data(dtype, scale):
    """The loss is computed in float32 whatever the data's dtype (float32 [B]); the gradient in the
    denoiser's parameter is finite at data of 1e4 (float16: 1e2, whose x_t stays in range)."""
    x0 = (X * scale).astype(dtype)
    for sched in (SCHED, COS):
        loss, g = jax.value_and_grad(lambda w: jnp.mean(df.ddpm_loss(KEY, lambda x, t: w * x, sched, x0)))(
            jnp.float32(0.5))
        assert loss.dtype == jnp.float32 and _finite(loss) and _finite(g)
