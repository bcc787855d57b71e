"""Derive `data_agents/pretrain/words.txt`: common English words for the synthetic pretraining
corpus, without any text of the built-in domain.

Usage: python scripts/pretrain_word_list.py   (needs the Qwen3 tokenizer the tests fetch from npm:
tests/fixtures/qwen3_tokenizer.py)

Why the Qwen3 vocabulary: byte-level BPE assigns ids in merge order, which follows frequency in
its training text, so its first whole-word tokens are a frequency-ordered list of common English
words — what a tiny base model's tokenizer should cover, from a source unrelated to our domain.
The outfitter domain's names, cities and street words are dropped, so the corpus cannot contain
them (tests/data_agents/test_pretrain_corpus.py checks the corpus itself).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Programming-language tokens that rank high in a code-heavy vocabulary but are not prose.
CODE_WORDS = set(
    "def const void null str int len var bool http https www html json xml src img div px func "
    "args kwargs self elif endif ifdef println printf std cpp php jsx tsx url uri api sql css dom "
    "init utf ascii enum param params config impl args argv attr attrs btn async await lambda "
    "typeof instanceof namespace struct uint println nil cls obj tmp ptr buf ctx msg err req res "
    "idx vec arr fmt pkg lib".split()
)


def main(n: int = 3000) -> None:
    from data_agents.domains.outfitter import db
    from tests.fixtures.qwen3_tokenizer import fetch_qwen3_tokenizer

    vocab = json.loads((fetch_qwen3_tokenizer() / "tokenizer.json").read_text())["model"]["vocab"]
    ranked = sorted((i, t[1:]) for t, i in vocab.items() if re.fullmatch(r"Ġ[a-z]{3,12}", t))
    domain = {w.lower() for w in db.FIRST_NAMES + db.LAST_NAMES}
    domain |= {c.lower() for c, _ in db.CITIES}
    domain |= {w.lower() for s in db.STREETS for w in s.split()}
    words = [w for _, w in ranked if w not in CODE_WORDS and w not in domain][:n]
    out = ROOT / "data_agents" / "pretrain" / "words.txt"
    out.write_text("\n".join(words) + "\n")
    print(f"{len(words)} words -> {out}")


if __name__ == "__main__":
    main()
