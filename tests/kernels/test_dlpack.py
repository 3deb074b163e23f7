"""fusednn.ops on DLPack arrays: torch CPU tensors and JAX arrays go in without a copy
(the op runs on the array's own memory), results come back as the caller's kind, mixed
kinds raise TypeError; torch CUDA tensors run on the cuda backend (GPU tests)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fusednn import dlpack, ops  # noqa: E402


def test_results_are_torch_tensors_with_numpy_values():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(7, 3, generator=g)
    bias = torch.randn(3, generator=g)
    r = ops.linear(a, b, bias, activation="relu")
    assert isinstance(r, torch.Tensor) and r.dtype == torch.float32 and r.device.type == "cpu"
    ref = np.maximum(a.numpy().astype(np.float64) @ b.numpy() + bias.numpy(), 0)
    np.testing.assert_allclose(r.numpy(), ref, rtol=1e-5, atol=1e-6)
    s = ops.softmax(a)
    assert isinstance(s, torch.Tensor)
    np.testing.assert_allclose(s.numpy(), torch.softmax(a, dim=1).numpy(), rtol=1e-5, atol=1e-7)
    assert isinstance(ops.mse(a, a + 1), float) and ops.mse(a, a + 1) == pytest.approx(1.0)
    # float64 and non-contiguous tensors are converted once at the boundary, as NumPy input is
    t = ops.tanh(torch.randn(4, 6, dtype=torch.float64, generator=g).T)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (6, 4)


def test_inputs_and_outputs_share_memory_with_torch():
    x = torch.randn(4, 6)
    view = dlpack._to_native(x, "cpu")
    assert isinstance(view, np.ndarray) and view.ctypes.data == x.data_ptr()  # zero-copy in
    out = torch.full((4, 6), float("nan"))
    r = ops.relu(x, out=out)
    assert r is out  # written through the shared memory: the caller's own tensor
    torch.testing.assert_close(out, torch.relu(x))
    # in place: the optimizer step changes the torch parameter itself
    p, grad, v = torch.ones(10), torch.full((10,), 2.0), torch.zeros(10)
    ptr = p.data_ptr()
    ops.sgd_update(p, grad, v, learning_rate=0.1, momentum=0.9)
    assert p.data_ptr() == ptr
    torch.testing.assert_close(p, torch.full((10,), 0.8))
    torch.testing.assert_close(v, torch.full((10,), -0.2))
    # zero-copy out: the returned tensor of a fresh result is a view of fusednn's array
    r = ops.matmul(torch.eye(3), torch.eye(3))
    assert isinstance(r, torch.Tensor) and bool((r == torch.eye(3)).all())


def test_mixed_kinds_raise_type_error():
    a = torch.randn(3, 3)
    with pytest.raises(TypeError, match="cannot mix array kinds"):
        ops.matmul(a, np.ones((3, 3), np.float32))
    with pytest.raises(TypeError, match="cannot mix array kinds"):
        ops.relu(np.ones((3, 3), np.float32), out=torch.empty(3, 3))
    # an in-place argument that is not float32 is rejected, not silently copied
    with pytest.raises(TypeError, match="float32"):
        ops.sgd_update(torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))



@pytest.mark.parametrize("make, reason", [
    (lambda: torch.ones(3, 2, requires_grad=True), "require gradient"),
    (lambda: torch.ones(3, 2, dtype=torch.bfloat16), "bfloat16"),
    (lambda: torch.ones(3, 2, dtype=torch.complex64).conj(), "conjugate"),
    (lambda: torch.eye(3).to_sparse(), "layout"),
])
def test_tensors_dlpack_cannot_export_raise_type_error(make, reason):
    """A tensor its producer will not export, or a dtype NumPy cannot hold, is the
    caller's bad input: TypeError naming the op and the producer's reason, and an out=
    tensor is left as it was."""
    with pytest.raises(TypeError, match=reason):
        ops.relu(make())
    with pytest.raises(TypeError, match=f"^matmul: .*{reason}"):
        ops.matmul(torch.ones(3, 3), make().reshape(2, 3) if make().layout == torch.strided else make())
    out = torch.full((3, 2), 7.0)
    with pytest.raises(TypeError, match=reason):
        ops.relu(make(), out=out)
    assert bool((out == 7.0).all())


def test_jax_arrays_go_in_zero_copy_and_come_back_as_jax_arrays():
    jax = pytest.importorskip("jax")  # imported here: its thread pools stay out of the other tests
    jnp = jax.numpy
    a = jnp.asarray(np.random.default_rng(0).standard_normal((5, 7)), dtype=jnp.float32)
    b = jnp.asarray(np.random.default_rng(1).standard_normal((7, 3)), dtype=jnp.float32)
    r = ops.linear(a, b, activation="tanh")
    assert isinstance(r, jax.Array) and r.dtype == jnp.float32 and r.shape == (5, 3)
    np.testing.assert_allclose(np.asarray(r), np.tanh(np.asarray(a, np.float64) @ np.asarray(b)), rtol=1e-5,
                               atol=1e-6)
    assert isinstance(ops.crossentropy(a, jax.nn.one_hot(jnp.arange(5) % 7, 7)), float)
    view = dlpack._to_native(a, "cpu")  # zero-copy in
    assert view.ctypes.data == a.unsafe_buffer_pointer()
    # JAX arrays are immutable: an out= or in-place argument is refused, not silently copied
    out = jnp.zeros((5, 7), jnp.float32)
    with pytest.raises(ValueError, match="read-only"):
        ops.relu(a, out=out)
    assert not bool(out.any())
    with pytest.raises(TypeError, match="cannot mix array kinds"):
        ops.matmul(a, torch.ones(7, 3))

@pytest.mark.gpu
def test_cuda_tensors_run_on_the_cuda_backend():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    a, b = torch.randn(33, 17, device="cuda"), torch.randn(17, 9, device="cuda")
    r = ops.matmul(a, b)
    assert isinstance(r, torch.Tensor) and r.device.type == "cuda"
    torch.testing.assert_close(r, a @ b, rtol=1e-4, atol=1e-4)
    out = torch.empty(33, 9, device="cuda")
    assert ops.matmul(a, b, out=out) is out
    with pytest.raises(TypeError, match="cannot mix array kinds"):
        ops.matmul(a, b.cpu())
