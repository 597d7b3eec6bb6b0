"""A small, self-written toxicity set for the demo when no real data can be had (no local OLID copy, no hub).

It is DEMO-GRADE: templated sentences where one insult or one friendly word decides the label. A model
trained on it shows the pipeline working end to end and nothing about real-world toxicity; its manifest
and the demo page say so (``data_grade: "demo"``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tagsmith.records import write_jsonl

INSULTS = ["idiot", "moron", "loser", "clown", "pathetic fool", "disgrace", "worthless troll", "imbecile",
           "dumb jerk", "total waste of space"]
PRAISE = ["legend", "genius", "sweetheart", "hero", "star", "champion", "gem", "treasure", "good sport", "pro"]
TEMPLATES_TOXIC = ["you are a {w}", "shut up, you {w}", "what a {w} this guy is", "only a {w} would post this",
                   "@USER you absolute {w}", "nobody cares, {w}", "get lost {w}", "this {w} should be banned"]
TEMPLATES_FRIENDLY = ["you are a {w}", "thanks, you {w}", "what a {w} this guy is", "only a {w} would post this",
                      "@USER you absolute {w}", "everyone loves you, {w}", "welcome back {w}", "this {w} deserves a medal"]
NEUTRAL = ["the game starts at {h} tonight", "see you at the meeting at {h}", "the bus leaves at {h}",
           "new episode drops at {h}", "dinner is ready at {h}", "the store opens at {h}"]


def build_seed_set(out_dir: str | Path, seed: int = 42) -> dict:
    rng = random.Random(seed)
    records = set()
    for template in TEMPLATES_TOXIC:
        for word in INSULTS:
            records.add((template.format(w=word), "toxic"))
    for template in TEMPLATES_FRIENDLY:
        for word in PRAISE:
            records.add((template.format(w=word), "non-toxic"))
    for template in NEUTRAL:
        for hour in range(1, 13):
            records.add((template.format(h=f"{hour} pm"), "non-toxic"))
    rows = sorted(records)
    rng.shuffle(rows)
    n = len(rows)
    cuts = {"train": rows[: int(0.7 * n)], "validation": rows[int(0.7 * n): int(0.85 * n)], "test": rows[int(0.85 * n):]}
    out_dir = Path(out_dir)
    for split, items in cuts.items():
        write_jsonl(out_dir / f"{split}.jsonl", ({"text": t, "label": l} for t, l in items))
    meta = {"source": "tagsmith seed set", "data_grade": "demo", "records": {s: len(v) for s, v in cuts.items()}}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta
