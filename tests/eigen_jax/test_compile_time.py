"""CompileTimer counts a new program's compilation once, not its cached calls, in nested timers."""

import jax
import jax.numpy as jnp
import numpy as np

from eigen_jax.compile_time import CompileTimer


def test_counts_compiles_not_cache_hits():
    f = jax.jit(lambda x: jnp.sin(x) @ x.T + 3.0)
    x = np.ones((5, 7), np.float32)
    jnp.zeros(1).block_until_ready()  # compile any helper programs outside the timers
    with CompileTimer() as outer:
        with CompileTimer() as first:
            f(x).block_until_ready()
        with CompileTimer() as again:
            f(x).block_until_ready()
            f(x + 1).block_until_ready()  # same shape: served from the jit cache
        with CompileTimer() as reshaped:
            f(np.ones((6, 7), np.float32)).block_until_ready()
    assert first.compiles >= 1 and first.seconds["compile_s"] > 0 and first.seconds["trace_s"] > 0
    assert again.compiles == 0
    assert reshaped.compiles >= 1
    assert outer.compiles == first.compiles + again.compiles + reshaped.compiles
    assert abs(outer.total_s - first.total_s - again.total_s - reshaped.total_s) < 1e-9
    with CompileTimer() as closed:
        pass
    f(np.ones((8, 7), np.float32)).block_until_ready()  # after exit: not counted
    assert closed.compiles == 0 and closed.total_s == 0
