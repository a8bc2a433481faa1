"""genjax._backend: the XLA:CPU workarounds are chosen per platform at lowering, and each has an
off switch.

References: the plain JAX expressions each workaround replaces (`lax.conv_general_dilated` and
its autodiff, `jax.nn.softplus`, `jnp.abs`, the [B, B, K, C] reduction), exported with
`jax.export` for the same platform: a GPU/TPU program must hold exactly their operations. The
CPU program must hold the CPU forms instead (e.g. only ordinary NHWC/HWIO convolutions in the
reverse pass), and its results must agree with the plain ones to float32 rounding.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from genjax import _backend, _numerics
from genjax import nn as gnn
from genjax.nn import _conv, _gan
from tests._export import NHWC_CONV
from tests._export import export_ops as _export_ops

PLATFORMS = ("cpu", "cuda", "tpu")


def _optimized_hlo(f, args) -> list[str]:
    """The instructions of the optimized CPU HLO of jit(f), without names and metadata."""
    text = re.sub(r",?\s*metadata=\{[^}]*\}", "", jax.jit(f).lower(*args).compile().as_text())
    return [re.sub(r"%[\w.\-]+", "%", line.strip()) for line in text.splitlines()
            if line.strip().startswith(("%", "ROOT"))]


# ------------------------------------------------------------------------------ the convolution

STRIDES, PADDING = (2, 2), ((1, 2), (1, 0))
_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.normal(size=(3, 9, 8, 2)), jnp.float32)
W = jnp.asarray(_rng.normal(size=(3, 4, 2, 5)), jnp.float32)


def _value_and_grad(conv):
    return jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), (0, 1))


def _ours(x, w):
    return gnn.conv2d(x, w, STRIDES, PADDING)


def _plain(x, w):
    return lax.conv_general_dilated(x, w, STRIDES, PADDING, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_conv_forward_and_grad_export_for_all_platforms_at_once():
    exported = jax.export.export(jax.jit(_value_and_grad(_ours)), platforms=PLATFORMS)(X, W)
    assert exported.platforms == PLATFORMS
    text = exported.mlir_module()
    assert "_platform_index" in text  # one module, the platform resolved before compilation
    # the CPU result of the multi-platform module is the one of the program compiled here
    (v, g), (v0, g0) = exported.call(X, W), jax.jit(_value_and_grad(_ours))(X, W)
    np.testing.assert_array_equal(v, v0)
    for a, b in zip(g, g0):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_conv_exported_for_gpu_and_tpu_from_a_cpu_host_is_the_plain_convolution(platform):
    ours = _export_ops(_value_and_grad(_ours), (X, W), platform)
    plain = _export_ops(_value_and_grad(_plain), (X, W), platform)
    assert ours == plain
    assert sum("convolution" in op for op in ours) == 3  # forward, input and weight gradient


def test_conv_exported_for_cpu_is_the_cpu_path_with_unchanged_results():
    ours = _export_ops(_value_and_grad(_ours), (X, W), "cpu")
    plain = _export_ops(_value_and_grad(_plain), (X, W), "cpu")
    assert ours != plain
    # the reverse pass is ordinary NHWC x HWIO convolutions only (autodiff's weight gradient
    # contracts over the batch axis instead: [f, 0, 1, b] x [i, 0, 1, o] -> [0, 1, b, f])
    assert all(NHWC_CONV in op for op in ours if "convolution" in op)
    assert not all(NHWC_CONV in op for op in plain if "convolution" in op)
    # its gradients are those formulas exactly, and agree with XLA's autodiff to rounding
    (v, (gx, gw)), (v0, (gx0, gw0)) = _value_and_grad(_ours)(X, W), _value_and_grad(_plain)(X, W)
    ct = jnp.cos(_plain(X, W))
    pads = _conv._pads(X.shape, W.shape, STRIDES, PADDING)
    np.testing.assert_array_equal(gx, _conv._input_grad(W, ct, X.shape, STRIDES, pads))
    np.testing.assert_array_equal(gw, _conv._weight_grad(X, ct, W.shape, STRIDES, pads))
    np.testing.assert_allclose(v, v0, rtol=1e-6)
    np.testing.assert_allclose(gx, gx0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, gw0, rtol=1e-5, atol=1e-5)


def test_conv_off_switch_takes_the_plain_path_with_the_same_results():
    f = _value_and_grad(_ours)
    on_hlo, on = _optimized_hlo(f, (X, W)), f(X, W)
    with _backend.disabled("conv_grad"):
        off_ops, off_hlo, off = _export_ops(f, (X, W), "cpu"), _optimized_hlo(f, (X, W)), f(X, W)
    assert off_ops == _export_ops(_value_and_grad(_plain), (X, W), "cpu")
    assert off_hlo == _optimized_hlo(_value_and_grad(_plain), (X, W)) != on_hlo
    assert _optimized_hlo(f, (X, W)) == on_hlo  # switched back on after the block
    for a, b in zip(jax.tree.leaves(on), jax.tree.leaves(off)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_conv_off_switch_from_the_environment(monkeypatch):
    f = _value_and_grad(_ours)
    monkeypatch.setenv(_backend.ENV_VAR, "softplus, conv_grad")
    assert not _backend.enabled("conv_grad") and not _backend.enabled("softplus")
    assert _backend.enabled("abs_grad")
    assert _export_ops(f, (X, W), "cpu") == _export_ops(_value_and_grad(_plain), (X, W), "cpu")
    monkeypatch.setenv(_backend.ENV_VAR, "all")
    assert not any(_backend.enabled(n) for n in _backend.WORKAROUNDS)
    monkeypatch.delenv(_backend.ENV_VAR)
    assert all(_backend.enabled(n) for n in _backend.WORKAROUNDS)


def test_unknown_switch_names_are_a_value_error_naming_the_source(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "conv_grad,conv_gard")
    with pytest.raises(ValueError, match=r"GENJAX_DISABLE_CPU_WORKAROUNDS=.*\['conv_gard'\]"):
        _backend.enabled("conv_grad")
    monkeypatch.delenv(_backend.ENV_VAR)
    with pytest.raises(ValueError, match=r"disabled\(\).*\['sofplus'\]"):
        with _backend.disabled("sofplus"):
            pass
    with pytest.raises(ValueError, match="name must be one of"):
        _backend.enabled("everything")


# ------------------------------------------------------------------------------ softplus, |x|, layout

SP_X = jnp.linspace(-30.0, 30.0, 61, dtype=jnp.float32)


def _softplus_loss(x):
    return jnp.sum(_numerics.softplus(x) + 0.5 * _numerics.log_sigmoid(x))


def _plain_softplus_loss(x):
    return jnp.sum(jax.nn.softplus(x) + 0.5 * jax.nn.log_sigmoid(x))


def test_softplus_is_jax_nn_on_gpu_and_tpu_and_the_stable_form_on_cpu():
    f, ref = jax.value_and_grad(_softplus_loss), jax.value_and_grad(_plain_softplus_loss)
    for platform in ("cuda", "tpu"):
        assert _export_ops(f, (SP_X,), platform) == _export_ops(ref, (SP_X,), platform)
    on = _export_ops(f, (SP_X,), "cpu")
    assert on != _export_ops(ref, (SP_X,), "cpu")
    v, g = f(SP_X)
    with _backend.disabled("softplus"):
        assert _export_ops(f, (SP_X,), "cpu") == _export_ops(ref, (SP_X,), "cpu")
        v_off, g_off = f(SP_X)
    np.testing.assert_allclose(v, v_off, rtol=1e-6)
    np.testing.assert_allclose(g, g_off, rtol=1e-6, atol=1e-7)


def _minibatch_features(params, x):
    return _gan.MinibatchDiscrimination(num_kernels=3, kernel_dim=2).apply(params, x)


MB_X = jnp.asarray(_rng.normal(size=(5, 4)), jnp.float32)
MB_P = _gan.MinibatchDiscrimination(num_kernels=3, kernel_dim=2).init(jax.random.key(0), MB_X)


def _plain_minibatch_features(params, x):
    """The layer's formula with jnp.abs over a [B, B, K, C] array (Salimans et al. 2016, 3.2)."""
    t = params["params"]["kernel"]
    m = (x @ t).reshape(x.shape[0], 3, 2)
    o = jnp.sum(jnp.exp(-jnp.sum(jnp.abs(m[:, None] - m[None, :]), axis=-1)), axis=1)
    return jnp.concatenate([x, o], axis=-1)


def _mb_loss(fn):
    return jax.value_and_grad(lambda p, x: jnp.sum(jnp.sin(fn(p, x))), (0, 1))


@pytest.mark.parametrize("off", [(), ("abs_grad",), ("minibatch_layout",), ("abs_grad", "minibatch_layout")])
def test_minibatch_switches_each_change_the_cpu_program_not_the_results(off):
    f = _mb_loss(_minibatch_features)
    plain_cpu = _export_ops(_mb_loss(_plain_minibatch_features), (MB_P, MB_X), "cpu")
    for platform in ("cuda", "tpu"):  # the plain path on GPU/TPU whatever the switches
        with _backend.disabled(*off):
            assert (_export_ops(f, (MB_P, MB_X), platform)
                    == _export_ops(_mb_loss(_plain_minibatch_features), (MB_P, MB_X), platform))
    on_ops, on = _export_ops(f, (MB_P, MB_X), "cpu"), f(MB_P, MB_X)
    with _backend.disabled(*off):
        off_ops, off_values = _export_ops(f, (MB_P, MB_X), "cpu"), f(MB_P, MB_X)
    assert (off_ops == on_ops) == (not off)
    assert (off_ops == plain_cpu) == (len(off) == 2)
    for a, b in zip(jax.tree.leaves(on), jax.tree.leaves(off_values)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ program structure


def test_replica_mode_auto_is_loop_on_cpu_unless_switched_off():
    assert jax.default_backend() == "cpu"
    assert _backend.auto_replica_mode() == "loop"
    with _backend.disabled("replica_loop"):
        assert _backend.auto_replica_mode() == "vmap"
    assert _backend.auto_replica_mode() == "loop"


def test_compile_fused_auto_asks_the_backend_module(monkeypatch):
    from genjax import train

    calls = []

    def fake_mode():
        calls.append(1)
        return "vmap"

    monkeypatch.setattr(_backend, "auto_replica_mode", fake_mode)
    train.compile_fused(lambda state, batch: (state, {}), replicas=True)
    assert calls == [1]
    train.compile_fused(lambda state, batch: (state, {}), replicas=True, replica_mode="loop")
    assert calls == [1]  # an explicit mode is not overridden


# ``conv_library``: genjax's programs are compiled with YNNPACK's individual convolutions taken
# out of XLA:CPU's default `xla_cpu_experimental_ynn_fusion_type` (individual dots, individual
# convolutions, reductions in jax 0.10.2); the compiled HLO names YNNPACK's ops `__ynn_fusion`.
def _ynn_convolutions(compiled_text: str) -> int:
    return sum(1 for line in compiled_text.splitlines()
               if '"__ynn_fusion"' in line and "conv_general_dilated" in line)


def _conv_program(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


_X, _W = jnp.ones((4, 14, 14, 32)), jnp.ones((3, 3, 32, 32))  # > 16 features: YNNPACK's by default


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU compiler option")
def test_jit_compiles_convolutions_with_xla_s_own_kernels_on_cpu_and_the_switch_restores_ynnpack():
    plain = jax.jit(_conv_program).lower(_X, _W).compile().as_text()
    assert _ynn_convolutions(plain) == 1  # the default this works around (if 0, it may be obsolete)
    ours = _backend.jit(_conv_program)
    assert _ynn_convolutions(ours.lower(_X, _W).compile().as_text()) == 0
    np.testing.assert_allclose(ours(_X, _W), _conv_program(_X, _W), rtol=1e-6)
    with _backend.disabled("conv_library"):
        assert _backend.compiler_options() == {}
        assert _ynn_convolutions(ours.lower(_X, _W).compile().as_text()) == 1
    assert _backend.compiler_options() == {"xla_cpu_experimental_ynn_fusion_type": _backend._YNN_WITHOUT_CONVS}


def test_jit_keeps_jax_jit_s_arguments_as_a_decorator_and_refuses_other_compiler_options():
    @_backend.jit(static_argnames=("n",), donate_argnums=0)
    def scale(x, n):
        return x * n

    assert scale.__name__ == "scale"
    np.testing.assert_array_equal(scale(jnp.arange(3.0), n=2), [0.0, 2.0, 4.0])
    assert scale.lower(jnp.arange(3.0), n=3).compile() is not None
    assert scale.eval_shape(jnp.arange(3.0), n=3).shape == (3,)
    with pytest.raises(TypeError, match="compiler_options"):
        _backend.jit(lambda x: x, compiler_options={})


def test_compile_fused_and_the_train_jit_use_the_backend_options():
    from genjax import train

    assert train.jit is _backend.jit
    step = lambda state, batch: (state + _conv_program(batch, _W).mean(), {"loss": jnp.zeros(())})
    fused = train.compile_fused(step)
    text = fused.lower(jnp.zeros(()), jnp.ones((2, *_X.shape))).compile().as_text()
    assert _ynn_convolutions(text) == 0 or jax.default_backend() != "cpu"


def test_jit_under_an_outer_jit_grad_or_vmap_is_the_plain_jit():
    inner = _backend.jit(lambda x: jnp.sin(x) * 2.0)
    x = jnp.arange(3.0)
    np.testing.assert_allclose(jax.jit(inner)(x), 2.0 * np.sin(np.arange(3.0)), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda v: inner(v).sum())(x), 2.0 * np.cos(np.arange(3.0)), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(inner)(x), 2.0 * np.sin(np.arange(3.0)), rtol=1e-6)
