"""TrialLog resume and its identity guard; summarize's task selection."""

import json

from eigen_jax.eval.results import TrialLog, summarize


def _trial(task, trial, reward):
    return {"task_id": task, "trial": trial, "reward": reward, "finish_reason": "user_stop"}


def test_same_identity_resumes(tmp_path):
    ident = {"weights_sha256": "aa", "temperature": 1.0}
    log = TrialLog(tmp_path / "trials.jsonl", identity=ident)
    log.add([_trial("t0", 0, 1.0), _trial("t0", 1, 0.0)])
    again = TrialLog(tmp_path / "trials.jsonl", identity=dict(ident))
    assert again.done("t0", 0) and again.done("t0", 1) and not again.done("t1", 0)


def test_other_identity_moves_old_log_aside(tmp_path):
    path = tmp_path / "trials.jsonl"
    log = TrialLog(path, identity={"weights_sha256": "aa"})
    log.add([_trial("t0", 0, 1.0)])
    fresh = TrialLog(path, identity={"weights_sha256": "bb"})
    assert not fresh.trials and not path.exists()
    stale = tmp_path / "trials.jsonl.stale-0"
    assert [json.loads(x)["task_id"] for x in stale.read_text().splitlines()] == ["t0"]
    assert json.loads((tmp_path / "trials.jsonl.stale-0.identity.json").read_text()) == {
        "weights_sha256": "aa"
    }
    fresh.add([_trial("t1", 0, 0.0)])
    TrialLog(path, identity={"weights_sha256": "aa"})  # and back: a second stale file
    assert (tmp_path / "trials.jsonl.stale-1").exists()
    assert json.loads((tmp_path / "trials.identity.json").read_text()) == {"weights_sha256": "aa"}


def test_log_without_identity_is_adopted(tmp_path):
    path = tmp_path / "trials.jsonl"
    TrialLog(path).add([_trial("t0", 0, 1.0)])
    log = TrialLog(path, identity={"weights_sha256": "aa"})
    assert log.done("t0", 0)


def test_summarize_counts_only_requested_tasks_and_trials(tmp_path):
    log = TrialLog(tmp_path / "trials.jsonl")
    log.add(
        [
            _trial("t0", 0, 1.0),
            _trial("t0", 1, 1.0),
            _trial("t0", 2, 0.0),
            _trial("t1", 0, 0.0),
            _trial("t1", 1, 1.0),
            _trial("t2", 0, 0.0),
            _trial("t2", 1, 0.0),
        ]
    )
    result = summarize(log, "outfitter", 2, task_ids=["t0", "t1"])
    assert result["num_tasks"] == 2
    # pass^1 = mean over tasks of c/n: (2/2 + 1/2) / 2; pass^2: (1 + 0) / 2
    assert result["pass^k"][1] == 0.75 and result["pass^k"][2] == 0.5
    assert summarize(log, "outfitter", 2)["num_tasks"] == 3
