"""Train step and decode call of one preset, from the eigen_jax tree at PATH (A/B across commits).

Run it alternately on a `git worktree` of an older commit and on this tree; prints one JSON line:
compile seconds of the forward+backward step and its median time (batch 2 x 512), and the median
of 9 timed 8-step decode calls over 8 slots at position 64 of a `--max_len`-slot cache. Only the
public model/sampler API is used, so it runs on trees before and after the scanned-stack change
(`--scan` needs a tree that has `ModelConfig.scan_layers`).

    git worktree add /tmp/old <commit>
    python bench/cpu_ab.py /tmp/old bench-25m; python bench/cpu_ab.py . bench-25m
    python bench/cpu_ab.py . bench-100m --scan false --max_len 128 --no_train
"""

import argparse
import json
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("tree")
ap.add_argument("preset")
ap.add_argument("--scan", choices=["default", "true", "false"], default="default")
ap.add_argument("--max_len", type=int, default=512)
ap.add_argument("--no_train", action="store_true")
ap.add_argument("--no_split", action="store_true", help="decode on the stacked weights")
args = ap.parse_args()
sys.path.insert(0, args.tree)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from eigen_jax.models import Transformer, get_config  # noqa: E402
from eigen_jax.sampling import steps  # noqa: E402


def median_s(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


kw = {} if args.scan == "default" else {"scan_layers": args.scan == "true"}
model = Transformer(get_config(args.preset, **kw), rngs=nnx.Rngs(0))
graphdef, params = nnx.split(model)
out = {
    "tree": args.tree,
    "preset": args.preset,
    "scan": args.scan,
    "max_len": args.max_len,
    "split": not args.no_split,
}
if not args.no_train:
    ids = jnp.asarray(np.random.RandomState(0).randint(3, 1000, (2, 512)))

    def loss(m):
        logp = jax.nn.log_softmax(m(ids)[:, :-1])
        return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1))

    train = jax.jit(lambda p: nnx.grad(loss)(nnx.merge(graphdef, p)))
    t0 = time.perf_counter()
    jax.block_until_ready(train(params))
    out["train_compile_s"] = round(time.perf_counter() - t0, 2)
    out["train_step_s"] = round(median_s(lambda: jax.block_until_ready(train(params)), 5), 4)
cache = [model.init_cache(8, args.max_len)]
state = steps.SlotState.empty(8, 1)._replace(
    active=np.ones(8, bool),
    max_new=np.full(8, 10**6, np.int32),
    position=np.full(8, 64, np.int32),
    temperature=np.ones(8, np.float32),
)


# What a CPU engine passes: per-layer weights split once (trees that have it).
split = None if args.no_split else getattr(steps, "split_layer_params", None)
extra = {"layer_params": split(graphdef, params)} if split else {}


def decode():
    cache[0] = jax.block_until_ready(
        steps.decode_steps(graphdef, params, cache[0], state, 8, **extra)
    )[0]


decode()
out["decode8_s"] = round(median_s(decode, 9), 4)
print(json.dumps(out))
