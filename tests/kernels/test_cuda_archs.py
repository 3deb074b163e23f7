"""Which GPUs a build's architecture list runs natively (no GPU needed)."""
from __future__ import annotations

import pytest

from fusednn.backends import cuda as cuda_backend


@pytest.mark.parametrize(
    "spec,cc,native",
    [
        ("75-real,80-real,90", (7, 5), True),
        ("75-real,80-real,90", (8, 0), True),
        ("75-real,80-real,90", (8, 6), True),  # sm_80 cubin on an RTX 30xx
        ("75-real,80-real,90", (8, 9), True),
        ("75-real,80-real,90", (9, 0), True),
        ("75-real,80-real,90", (7, 0), False),  # older than every cubin
        ("75-real,80-real,90", (10, 0), False),  # PTX only: JIT-compiled by the driver
        ("86", (8, 0), False),  # a later minor's cubin does not run on an earlier one
        ("90-virtual", (9, 0), False),
        ("75;80;86;89;90", (8, 9), True),
    ],
)
def test_runs_natively(spec, cc, native):
    built = cuda_backend._built_archs(spec)
    assert cuda_backend._runs_natively(built, *cc) is native


def test_built_archs_parses_cmake_lists():
    assert cuda_backend._built_archs("75-real,80-real,90") == [(7, 5), (8, 0), (9, 0)]
    assert cuda_backend._built_archs("100-virtual") == []  # PTX only
    assert cuda_backend._built_archs("") == []
