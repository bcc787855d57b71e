"""`check`: declarative criteria and the sandboxed code checker combined (a product)."""

from __future__ import annotations

import pytest

pytest.importorskip("tau2")

from data_agents.checkers import SandboxLimits, check  # noqa: E402
from data_agents.domains.tau2_adapter import Tau2Domain  # noqa: E402

from .tau2_trajectories import play, variants  # noqa: E402

LIMITS = SandboxLimits(cpu_s=5, wall_s=20.0)
# An honest LLM-style checker: the gold write changed some order's status, nothing was deleted.
ORDER_CHANGED = """
def check(initial_db, final_db, transcript):
    before, after = initial_db["orders"], final_db["orders"]
    changed = [k for k in after if k in before and after[k]["status"] != before[k]["status"]]
    return set(before) <= set(after) and len(changed) >= 1 and any(
        m["role"] == "assistant" for m in transcript)
"""


@pytest.fixture(scope="module")
def retail():
    domain = Tau2Domain("retail")
    task = domain.tasks("base")[5]
    runs = {name: play(domain, task, *v) for name, v in variants(domain, task).items()}
    return domain, task, runs


def _with(task, **update):
    return task.model_copy(update=update)


def test_code_checker_joins_the_product(retail):
    domain, task, runs = retail
    coded = _with(task, checker_source=ORDER_CHANGED)
    v = check(domain, coded, *runs["gold"], limits=LIMITS)
    assert v.status == "pass" and v.components == {"DB": 1.0, "COMMUNICATE": 1.0, "CODE": 1.0}
    v = check(domain, coded, *runs["drop_write"], limits=LIMITS)
    assert v.status == "fail" and v.components["CODE"] == 0.0 and v.components["DB"] == 0.0
    # A checker that is always False makes a declaratively perfect dialogue fail.
    never = _with(task, checker_source="def check(a, b, t):\n    return False\n")
    v = check(domain, never, *runs["gold"], limits=LIMITS)
    assert v.status == "fail" and v.components["DB"] == 1.0 and v.components["CODE"] == 0.0


def test_errors_never_pass(retail):
    domain, task, runs = retail
    hostile = _with(
        task,
        checker_source="import os\ndef check(a, b, t):\n    os.system('id')\n    return True\n",
    )
    v = check(domain, hostile, *runs["gold"], limits=LIMITS)
    assert v.status == "error" and v.reward == 0.0 and "os.system" in v.reason
    basis = task.evaluation_criteria.model_copy(update={"reward_basis": ["DB", "CODE"]})
    missing = _with(task, evaluation_criteria=basis)
    v = check(domain, missing, *runs["gold"], limits=LIMITS)
    assert v.status == "error" and "no checker_source" in v.reason


def test_without_code_checker_is_declarative(retail):
    domain, task, runs = retail
    v = check(domain, task, *runs["drop_write"])
    assert v.status == "fail" and v.components == {"DB": 0.0, "COMMUNICATE": 1.0}
