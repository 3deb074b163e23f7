"""fusednn.autodiff: every keras.ops function's vector-Jacobian product against central finite
differences in float64, on random inputs including broadcasting and size-1 axes; the graph
walk (shared subexpressions, unused sources, no_grad) and the Variable."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import autodiff as ad
from fusednn import keras_ops as ops

RNG = np.random.default_rng(1234)


def _randn(shape, lo=None, hi=None):
    if lo is not None:
        return RNG.uniform(lo, hi, size=shape)
    return RNG.standard_normal(shape)


def fd_check(fn, inputs, eps=1e-6, rtol=1e-6, atol=1e-8):
    """The gradient of sum(w * fn(*inputs)) by autodiff against central differences."""
    inputs = [np.array(x, dtype=np.float64) for x in inputs]
    leaves = [ad.Tensor(x.copy(), requires_grad=True) for x in inputs]
    out = fn(*leaves)
    assert isinstance(out, ad.Tensor) and out.value.dtype == np.float64
    w = RNG.standard_normal(out.shape)
    grads = ad.gradients(out, leaves, w)

    def objective(vals):
        return float(np.sum(w * ops.convert_to_numpy(fn(*[ad.Tensor(v) for v in vals]))))  # float64 throughout

    for i, x in enumerate(inputs):
        assert grads[i].shape == x.shape, (i, grads[i].shape, x.shape)
        num = np.zeros_like(x)
        for j in np.ndindex(x.shape):
            up = [v.copy() for v in inputs]
            down = [v.copy() for v in inputs]
            up[i][j] += eps
            down[i][j] -= eps
            num[j] = (objective(up) - objective(down)) / (2 * eps)
        np.testing.assert_allclose(grads[i], num, rtol=rtol, atol=atol * max(1.0, np.abs(num).max()),
                                   err_msg=f"input {i}")


BROADCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((1,), (2, 3)), ((), (2, 3)), ((2, 1, 3), (4, 1))]


@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power"])
def test_binary_ops(name, shapes):
    a, b = _randn(shapes[0]), _randn(shapes[1])
    if name == "divide":
        b = np.sign(b) * (np.abs(b) + 0.5)
    if name == "power":
        a = np.abs(a) + 0.5
    fd_check(getattr(ops, name), [a, b])


def test_operators_and_scalars():
    fd_check(lambda a, b: (2.0 * a - b / 3.0 + 1.0) * a ** 2 / (1.5 + b * b) - ops.mean((-a) @ b.T, axis=1, keepdims=True),
             [_randn((3, 4)), _randn((3, 4))])
    fd_check(lambda a: 3.0 ** a + abs(a), [_randn((2, 3)) + 3.0])
    fd_check(lambda a: 1.0 / a + 2.0 - a, [_randn((4,), 0.5, 2.0)])


UNARY = {
    "negative": None, "square": None, "exp": None, "expm1": None, "tanh": None, "sigmoid": None, "softplus": None,
    "silu": None, "softsign": None, "log_sigmoid": None, "erf": None,
    "sqrt": (0.2, 3.0), "log": (0.2, 3.0), "log1p": (-0.5, 3.0), "log2": (0.2, 3.0), "log10": (0.2, 3.0),
    "reciprocal": (0.5, 2.0),
}


@pytest.mark.parametrize("shape", [(2, 3), (1,), (1, 1), ()], ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops(name, shape):
    dom = UNARY[name]
    x = _randn(shape) * 2 if dom is None else _randn(shape, *dom)
    fd_check(getattr(ops, name), [x])


def _away_from(x, points, gap=0.05):
    """Move values off the kinks of piecewise functions so differences are one-sided-free."""
    for p in points:
        near = np.abs(x - p) < gap
        x = np.where(near, p + np.sign(x - p + 1e-12) * gap * 2, x)
    return x


@pytest.mark.parametrize("fn", [ops.abs, ops.relu, ops.elu, ops.selu, ops.leaky_relu, ops.relu6, ops.hard_sigmoid,
                                lambda x: ops.elu(x, alpha=0.5), lambda x: ops.leaky_relu(x, negative_slope=0.1),
                                lambda x: ops.gelu(x), lambda x: ops.gelu(x, approximate=False),
                                lambda x: ops.clip(x, -0.5, 0.7)],
                         ids=["abs", "relu", "elu", "selu", "leaky_relu", "relu6", "hard_sigmoid", "elu_a", "leaky_a",
                              "gelu_tanh", "gelu_exact", "clip"])
def test_piecewise_ops(fn):
    x = _away_from(_randn((3, 5)) * 4, [0.0, 6.0, -3.0, 3.0, -0.5, 0.7])
    fd_check(fn, [x])


def test_where_both_branches_and_broadcast():
    c = RNG.standard_normal((3, 4)) > 0
    fd_check(lambda a, b: ops.where(c, a, b), [_randn((3, 4)), _randn((4,))])
    fd_check(lambda a, b: ops.where(c[:, :1], a * 2.0, b), [_randn((1, 4)), _randn((3, 1))])
    # the untaken branch may overflow without poisoning the gradient (elu's expm1 of min(x, 0))
    x = np.array([[-1.0, 800.0]])
    leaf = ad.Tensor(x, requires_grad=True)
    (g,) = ad.gradients(ops.elu(leaf), [leaf])
    assert np.isfinite(g).all() and g[0, 1] == 1.0


AXES = [None, 0, -1, (0, 2), (1,)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod", "std", "var", "logsumexp"])
def test_reductions(name, axis, keepdims):
    for shape in [(2, 3, 4), (1, 3, 1)]:
        x = _randn(shape)
        if name == "prod":
            x = np.sign(x) * (np.abs(x) + 0.5)
        fd_check(lambda t: getattr(ops, name)(t, axis=axis, keepdims=keepdims), [x])


def test_prod_with_zeros_and_extreme_ties():
    x = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    leaf = ad.Tensor(x, requires_grad=True)
    (g,) = ad.gradients(ops.prod(leaf, axis=1), [leaf])
    np.testing.assert_array_equal(g, [[6.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    leaf = ad.Tensor(np.array([1.0, 3.0, 3.0]), requires_grad=True)
    (g,) = ad.gradients(ops.max(leaf), [leaf])
    np.testing.assert_array_equal(g, [0.0, 0.5, 0.5])  # shared among ties, as TensorFlow


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
                                    ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 1), (1, 1))], ids=str)
def test_matmul(shapes):
    fd_check(ops.matmul, [_randn(shapes[0]), _randn(shapes[1])])


def test_dot_shapes():
    fd_check(ops.dot, [_randn((3, 4)), _randn((4, 2))])
    fd_check(ops.dot, [_randn(()), _randn((3,))])
    fd_check(ops.dot, [_randn((2, 3, 4)), _randn((4,))])


def test_shape_ops():
    fd_check(lambda t: ops.transpose(t), [_randn((2, 3, 4))])
    fd_check(lambda t: ops.transpose(t, (1, 0, 2)), [_randn((2, 3, 4))])
    fd_check(lambda t: t.T, [_randn((2, 3))])
    fd_check(lambda t: ops.reshape(t, (4, -1)), [_randn((2, 3, 4))])
    fd_check(lambda t: ops.expand_dims(t, 1) * np.arange(3.0).reshape(1, 3, 1), [_randn((2, 4))])
    fd_check(lambda t: ops.squeeze(t), [_randn((1, 3, 1))])
    fd_check(lambda t: ops.squeeze(t, axis=0), [_randn((1, 3, 1))])
    fd_check(lambda a, b: ops.concatenate([a, b, a], axis=1), [_randn((2, 3)), _randn((2, 1))])
    fd_check(lambda a, b: ops.stack([a, b], axis=1), [_randn((2, 3)), _randn((2, 3))])
    fd_check(lambda a: a[1:, ::2] * 2.0, [_randn((3, 5))])
    fd_check(lambda a: a[np.array([0, 2, 0])], [_randn((3, 2))])  # repeated rows accumulate
    fd_check(lambda a: ops.cast(a, "float64") * a, [_randn((2, 2))])
    fd_check(lambda a: ops.take(a, np.array([2, 0, 2]), axis=1), [_randn((2, 3))])
    fd_check(lambda a: ops.take(a, np.array([[1, 1], [5, 0]])), [_randn((2, 3))])
    fd_check(lambda a: ops.take_along_axis(a, np.array([[0], [2], [2]]), axis=-1), [_randn((3, 4))])
    fd_check(lambda a: ops.take_along_axis(a, np.array([[0, 0, 1]]), axis=0), [_randn((2, 3))])
    fd_check(lambda a: ops.cumsum(a, axis=1), [_randn((2, 4))])
    fd_check(lambda a: ops.cumsum(a), [_randn((2, 3))])


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_family(axis):
    fd_check(lambda t: ops.softmax(t, axis=axis), [_randn((3, 4)) * 3])
    fd_check(lambda t: ops.log_softmax(t, axis=axis), [_randn((3, 4)) * 3])


def test_cross_entropies():
    t = RNG.uniform(0, 1, (4, 3))
    fd_check(lambda p: ops.binary_crossentropy(t, p), [RNG.uniform(0.05, 0.95, (4, 3))])
    fd_check(lambda z: ops.binary_crossentropy(t, z, from_logits=True), [_randn((4, 3)) * 3])
    onehot = np.eye(3)[RNG.integers(0, 3, 4)]
    fd_check(lambda p: ops.categorical_crossentropy(onehot, p), [RNG.uniform(0.1, 1.0, (4, 3))])
    fd_check(lambda z: ops.categorical_crossentropy(onehot, z, from_logits=True), [_randn((4, 3))])
    labels = RNG.integers(0, 3, (4, 1))
    fd_check(lambda p: ops.sparse_categorical_crossentropy(labels, p), [RNG.uniform(0.1, 1.0, (4, 3))])
    fd_check(lambda z: ops.sparse_categorical_crossentropy(labels[:, 0], z, from_logits=True), [_randn((4, 3))])


def test_graph_shared_nodes_unused_sources_and_no_grad():
    a = ad.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = ad.Tensor(np.array([3.0]), requires_grad=True)
    unused = ad.Tensor(np.ones((2, 2)), requires_grad=True)
    s = a * a
    out = ops.sum(s * s + s)  # s is used twice: its gradient must be summed once per use
    ga, gb, gu = ad.gradients(out, [a, b, unused])
    np.testing.assert_allclose(ga, 4 * a.value ** 3 + 2 * a.value)
    np.testing.assert_array_equal(gb, [0.0])
    np.testing.assert_array_equal(gu, np.zeros((2, 2)))
    with ad.no_grad():
        c = a * 2.0
    assert not c.requires_grad and c.parents == ()
    # a constant result (comparison) passes no gradient
    assert not (a > 1.0).requires_grad


def test_variable_is_live_and_assignable():
    arr = np.array([1.0, 2.0], dtype=np.float32)
    v = ad.Variable(arr, name="w")
    y = ops.sum(v * v)
    (g,) = ad.gradients(y, [v])
    np.testing.assert_array_equal(g, [2.0, 4.0])
    arr[...] = 5.0  # an in-place update (as the optimizer does) is seen by the variable
    np.testing.assert_array_equal(v.numpy(), [5.0, 5.0])
    v.assign([1.0, 0.0])
    np.testing.assert_array_equal(arr, [1.0, 0.0])
    v.assign_add(np.ones(2))
    np.testing.assert_array_equal(arr, [2.0, 1.0])
    with pytest.raises(ValueError, match="cannot take"):
        v.assign(np.ones(3))
    fixed = ad.Variable(np.ones(2), trainable=False)
    assert not (fixed * 2.0).requires_grad


def test_value_and_grad_and_bad_output():
    val, (g,) = ad.value_and_grad(lambda x: ops.mean(ops.square(x)), np.array([1.0, 3.0]))
    assert float(val) == 5.0
    np.testing.assert_array_equal(g, [1.0, 3.0])
    with pytest.raises(TypeError, match="must return a tensor"):
        ad.value_and_grad(lambda x: 1.0, np.ones(2))


ACTIVATIONS = ["relu", "sigmoid", "tanh", "linear", "elu", "selu", "leaky_relu", "relu6", "gelu", "swish", "silu",
               "softplus", "softsign", "hard_sigmoid", "hard_silu", "hard_swish", "mish", "exponential", "softmax",
               "log_softmax"]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_keras_activations_on_tensors(name):
    """keras.activations.<name> on a recorded tensor (a custom layer's call): the kernels' values
    on arrays, and gradients by finite differences."""
    from fusednn import keras

    f = keras.activations.get(name)
    x = _away_from(_randn((3, 4)) * 3, [0.0, 6.0, -3.0, 3.0])
    np.testing.assert_allclose(f(ad.Tensor(x)).value, np.asarray(f(x.astype(np.float32)), dtype=np.float64),
                               rtol=2e-5, atol=2e-6)
    fd_check(f, [x])
