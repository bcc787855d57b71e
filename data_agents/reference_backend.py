"""Offline generation with a domain's REFERENCE SOLVER instead of LLM agents.

Same output as the LLM engine — checker-verified dialogue records in a durable journal, published
as TFDS — so the whole pipeline runs offline (quickstart, tests). Only domains that ship a
reference solver (`Domain.reference_dialogue`) support it (the built-in `outfitter`, and any
registered domain that implements it). Resumable: keys already journaled are
skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data_agents import checkers
from data_agents.domains import Domain, load
from data_agents.journal import Journal
from data_agents.records import DialogueRecord


def generate_reference(
    domain_name: str,
    journal_path: str | Path,
    num_tasks: dict[str, int] | None = None,
    on_record: Callable[[DialogueRecord], None] | None = None,
    **domain_kwargs,
) -> dict[str, int]:
    """Solve the first `num_tasks[split]` tasks of each split; returns accepted/rejected counts."""
    domain = load(domain_name, **domain_kwargs)
    if type(domain).reference_dialogue is Domain.reference_dialogue:
        raise ValueError(f"domain {domain_name!r} has no reference solver; use an LLM backend")
    counts = {"accepted": 0, "rejected": 0, "skipped": 0}
    with Journal(journal_path) as journal:
        for split, n in (num_tasks or {"train": None, "test": None}).items():
            for task in domain.tasks(split)[:n]:
                key = f"reference/{split}/{task.id}"
                if key in journal:
                    counts["skipped"] += 1
                    continue
                out = domain.reference_dialogue(task)
                verdict = checkers.check(domain, task, out["final_env"], out["messages"])
                ok = verdict.status == "pass"
                record = DialogueRecord(
                    key=key,
                    status="accepted" if ok else "rejected",
                    domain=domain_name,
                    task=task.to_json(),
                    tools=out["tools"],
                    policy=domain.policy,
                    messages=out["messages"],
                    verdict=verdict.to_json(),
                    checker_source=task.checker_source,
                    failure=None
                    if ok
                    else {
                        "stage": "trajectory_verify",
                        "reason": verdict.reason or "checker failed",
                        "attribution": "trajectory",
                    },
                    provenance={
                        "backend": "reference",
                        "round": 0,
                        "stream": "reference",
                        "prompt_version": "n/a",
                        "termination": out["termination"],
                    },
                    split=split,
                )
                journal.append(record)
                counts[record.status] += 1
                if on_record:
                    on_record(record)
    return counts
