"""The offline toy world: a fictional knowledge base, generated from the recipe's seed, that a tiny
model can learn in a minute on a CPU and be checked on.

    write_world(recipe.world, seed=recipe.seed, out_dir=checkpoints/<name>/world)

writes corpus.jsonl ({"text"}: pretraining + tokenizer), sft.jsonl (prompt/completion), dpo.jsonl
(prompt/chosen/rejected), eval.jsonl (the measurement benchmark in the generic `jsonl` format: id,
question, answers = every accepted surface form of the gold, incorrect_answers, plus meta keys) and
world.json (config, seed, counts, the fact table with each fact's corpus frequency), world.json last.

The world. People (short invented names) each have a city, a job and a pet; every city lies in
one country. A *fact* is (person, attribute, value). Each fact gets a frequency bucket
(`frequencies`: bucket -> number of corpus occurrences, e.g. many=8, few=3, once=1, never=0); an
occurrence is a statement naming the person ("Kado lives in Rashford.") or a Q/A block
("Q: Where does Kado live?\nA: They live in Rashford."). City -> country facts are frequent;
"Which country does <person> live in?" for held-out people is never stated anywhere and needs one
reasoning step (person -> city -> country); SFT teaches that question on the training people.

Design choices (the issue's planning prototype showed that a naive world does not work: SFT on the
other facts in one house style drove held-out accuracy from 30% to 7% and SCR stayed at 0):
- Several surface forms per answer (`styles`: sentence "They live in X.", alt "Their home is X.",
  bare "X.", hedged "I think they live in X.", hedged_bare "Probably X."), mixed in the corpus's
  Q/A blocks by weight, so the base model answers the same fact in varied phrasings: exact splits
  them, jaccard (bigram overlap) merges templated sentences even across *different* values, the
  embedding clusterer sits in between. eval `answers` lists all five forms (short_qa also accepts
  any answer containing the value as whole words).
- Answers say "they"/"it" instead of repeating the person's name. With names in the answer, the
  tiny model copied the name from the question with only ~0.9 probability per sample, so at T=1
  most questions got a misspelled-name sample and exact SCR was capped by copy noise, not meaning.
- Held-out (eval) facts are spread evenly over the buckets, at most one per person, and appear in
  no SFT or DPO row; a held-out city's person has no country stated anywhere (it would narrow the
  city down). SFT teaches the house answer format (`house_style`) on every *other* fact of every
  person -- so each held-out person is seen in the SFT format -- without teaching held-out facts.
  Training facts come only from `train_buckets` (by default not `never`): SFT on facts the base
  never saw teaches hallucination rather than format.
- The eval questions use exactly the corpus's question templates, so "rare fact" means rare, not
  "asked in an unseen way".
- DPO pairs (training facts only) carry the typicality bias named in the literature: chosen is
  always the correct value in the house phrasing; rejected is a wrong value in that phrasing or --
  with probability `dpo_typicality_share` -- the *correct* value in an atypical phrasing (bare,
  hedged). So DPO rewards typical phrasing, not only correctness. (recipes/toy.yaml adds TRL's `sft`
  loss to DPO's sigmoid loss: pure DPO at a learning rate strong enough to act drove the tiny
  model's chosen log-probabilities down and its answers into loops.)
Determinism: one random.Random(seed) drives everything in a fixed order; same config + seed -> the
same bytes. Idempotence: world.json (written last) records version + config + seed; a directory that
already holds them is left alone.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.common.errors import UsageError, suggest
from measure.common.fields import check_mapping, declared
from measure.common.io import provenance, read_json, write_json, write_jsonl

VERSION = 2  # bump when the generator's output changes for the same config + seed

STYLES = ("sentence", "alt", "bare", "hedged", "hedged_bare")
# key -> (default, allowed types). Nested mappings are checked separately below.
@dataclass(frozen=True)
class WorldSpec:
    """A recipe's `world:` section, one declaration per key (validation and --help read it)."""
    people: int = field(default=100, metadata={"help": "number of people (each has city, job, pet)",
                                               "min": 2, "max": 5000})   # max: well inside the name pools
    cities: int = field(default=8, metadata={"help": "distinct city values", "min": 2, "max": 320})
    countries: int = field(default=4, metadata={"help": "cities are spread over this many countries (<= cities)",
                                                "min": 1})
    frequencies: dict = field(default_factory=lambda: {"many": 8, "few": 3, "once": 1, "never": 0}, metadata={
        "help": "bucket -> corpus occurrences of each fact in it"})
    eval_per_bucket: int = field(default=20, metadata={"help": "held-out recall questions per bucket", "min": 0})
    reasoning_questions: int = field(default=16, metadata={
        "help": "held-out person -> country questions (one reasoning step)", "min": 0})
    train_buckets: list = field(default_factory=lambda: ["many", "few", "once"], metadata={
        "help": "buckets the SFT/DPO facts are drawn from"})
    qa_share: float = field(default=0.5, metadata={
        "help": "share of a fact's corpus occurrences written as Q/A (rest: statements)", "min": 0, "max": 1})
    styles: dict = field(default_factory=lambda: {"sentence": 0.4, "alt": 0.15, "bare": 0.15, "hedged": 0.15,
                                                  "hedged_bare": 0.15}, metadata={
        "help": "answer style -> share of the corpus's Q/A answers"})
    house_style: str = field(default="sentence", metadata={"help": "the SFT answer format and DPO's typical phrasing"})
    city_country_repeats: int = field(default=12, metadata={"help": "corpus occurrences of each city -> country fact",
                                                            "min": 1})
    country_repeats: int = field(default=2, metadata={"help": "corpus occurrences of a training person's country",
                                                      "min": 0})
    dpo_pairs_per_fact: int = field(default=2, metadata={"help": "DPO pairs per training fact", "min": 1})
    dpo_typicality_share: float = field(default=0.5, metadata={
        "help": "share of pairs whose rejected answer is the correct value in an atypical phrasing", "min": 0, "max": 1})


ATTRIBUTES = ("city", "job", "pet")
JOBS = ("baker", "weaver", "potter", "smith", "farmer", "miner", "sailor", "healer", "tailor", "hunter",
        "mason", "cooper")
PETS = ("cat", "dog", "owl", "goat", "fox", "hare", "crow", "mule", "duck", "toad", "bee", "newt")
# per attribute: question, the statement forms used in the corpus (p = person, v = value), and the
# answer forms. Answers say "they"/"it" instead of repeating the name: a tiny model copies a name
# from the question with only ~90% probability at T=1, and those slips would split exact clusters
# by noise rather than by meaning.
TEMPLATES = {
    "city": ("Where does {p} live?", ("{p} lives in {v}.", "{p} is from {v}."),
             ("They live in {v}.", "Their home is {v}.")),
    "job": ("What is the job of {p}?", ("{p} works as a {v}.", "{p} is a {v} by trade."),
            ("They work as a {v}.", "They are a {v} by trade.")),
    "pet": ("Which pet does {p} keep?", ("{p} keeps a {v}.", "{p} has a pet {v}."),
            ("They keep a {v}.", "Their pet is a {v}.")),
    "country": ("Which country does {p} live in?", ("{p} lives in the land of {v}.", "{p} is a citizen of {v}."),
                ("They live in the land of {v}.", "They are a citizen of {v}.")),
    "city_country": ("Which country is {p} in?", ("{p} is a city in {v}.", "{p} lies in {v}."),
                     ("It is a city in {v}.", "It lies in {v}.")),
}
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_CITY_ENDS = ("ford", "wick", "holm", "stead", "mouth", "bury", "dale", "port")
_COUNTRY_ENDS = ("ania", "eria", "oria", "avia", "esia", "udia")


def resolve_world(raw: dict | None) -> dict:
    """Defaults filled in (a fresh copy; nested defaults are copied, not shared)."""
    import copy
    out = {key: d.default for key, d in declared(WorldSpec).items()}   # fresh: factories give new containers
    out.update(copy.deepcopy(raw or {}))
    return out


def validate_world(raw: Any, where: str = "world") -> None:
    """Raise UsageError naming the key (and the valid choices) for anything generate_world cannot use."""
    if raw is None:
        return
    check_mapping(raw, WorldSpec, where)   # keys, types and the declared bounds of each
    cfg = resolve_world(raw)
    if cfg["countries"] > cfg["cities"]:
        raise UsageError(f"{where}.countries: must be <= cities ({cfg['cities']}), got {cfg['countries']}")
    freq = cfg["frequencies"]
    if not freq:
        raise UsageError(f"{where}.frequencies: give at least one bucket, e.g. {{many: 8, once: 1, never: 0}}")
    for name, count in freq.items():
        if not isinstance(name, str) or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(f"{where}.frequencies.{name}: expected a non-negative integer count, got {count!r}")
    if not cfg["train_buckets"] or not all(isinstance(b, str) for b in cfg["train_buckets"]):
        raise UsageError(f"{where}.train_buckets: expected a non-empty list of bucket names from frequencies")
    for b in cfg["train_buckets"]:
        if b not in freq:
            raise UsageError(f"{where}.train_buckets: unknown bucket {b!r}{suggest(b, freq)}")
    styles = cfg["styles"]
    for name, weight in styles.items():
        if name not in STYLES:
            raise UsageError(f"{where}.styles: unknown style {name!r}{suggest(str(name), STYLES)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise UsageError(f"{where}.styles.{name}: expected a non-negative weight, got {weight!r}")
    if not sum(styles.values()) > 0:
        raise UsageError(f"{where}.styles: the weights must not all be zero")
    if cfg["house_style"] not in STYLES:
        raise UsageError(f"{where}.house_style: unknown style {cfg['house_style']!r}{suggest(cfg['house_style'], STYLES)}")
    needed = cfg["eval_per_bucket"] * len(freq) + cfg["reasoning_questions"]
    if needed > cfg["people"]:
        raise UsageError(f"{where}.people: {cfg['people']} people cannot hold {needed} held-out questions "
                         f"(eval_per_bucket x buckets + reasoning_questions, at most one per person)")


# ---------------------------------------------------------------- names and surface forms

def _names(rng: random.Random, n: int, ends: tuple[str, ...], taken: set[str], syllables: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        stem = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        name = (stem + rng.choice(ends)).capitalize() if ends else (stem + rng.choice(("n", "l", "r", ""))).capitalize()
        if name.lower() not in taken:
            taken.add(name.lower())
            out.append(name)
    return out


def statement(attribute: str, person: str, value: str, form: int) -> str:
    """A corpus statement of the fact (form 0 or 1), naming the person."""
    return TEMPLATES[attribute][1][form].format(p=person, v=value)


def surface(attribute: str, value: str, style: str) -> str:
    """One phrasing of the answer `value` to an `attribute` question (the question names the person)."""
    sentence, alt = (t.format(v=value) for t in TEMPLATES[attribute][2])
    return {"sentence": sentence, "alt": alt, "bare": f"{value[0].upper()}{value[1:]}.",
            "hedged": f"I think {sentence[0].lower()}{sentence[1:]}", "hedged_bare": f"Probably {value}."}[style]


def question(attribute: str, person: str) -> str:
    return TEMPLATES[attribute][0].format(p=person)


# ---------------------------------------------------------------- generation

def generate_world(raw: dict | None, seed: int) -> dict[str, Any]:
    """The whole world as data: {'world': world.json content, 'corpus'|'sft'|'dpo'|'eval': rows}."""
    validate_world(raw)
    cfg = resolve_world(raw)
    rng = random.Random(seed)
    taken: set[str] = {w for w in (*JOBS, *PETS)}
    countries = _names(rng, cfg["countries"], _COUNTRY_ENDS, taken, 1)
    cities = _names(rng, cfg["cities"], _CITY_ENDS, taken, 1)
    people = _names(rng, cfg["people"], (), taken, 2)
    city_country = {c: countries[i % len(countries)] for i, c in enumerate(cities)}
    values = {"city": cities, "job": list(JOBS), "pet": list(PETS), "country": countries}
    facts: list[dict] = []
    for p in people:
        drawn = {attr: rng.choice(values[attr]) for attr in ATTRIBUTES}
        drawn["country"] = city_country[drawn["city"]]
        facts += [{"person": p, "attribute": attr, "value": v} for attr, v in drawn.items()]

    # held-out facts: eval_per_bucket per bucket, attributes rotating, at most one per person
    buckets = list(cfg["frequencies"])
    order = list(range(len(people)))
    rng.shuffle(order)
    by_key = {(f["person"], f["attribute"]): f for f in facts}
    slot = 0
    for b in buckets:
        for i in range(cfg["eval_per_bucket"]):
            f = by_key[(people[order[slot]], ATTRIBUTES[(slot + i) % len(ATTRIBUTES)])]
            f.update(split="eval", bucket=b)
            if f["attribute"] == "city":  # the person's country would narrow the held-out city down
                by_key[(f["person"], "country")].update(split="withheld", bucket="never")
            slot += 1
    for _ in range(cfg["reasoning_questions"]):  # the person's city stays a training fact, frequent
        p = people[order[slot]]
        by_key[(p, "country")].update(split="reasoning", bucket="never")
        by_key[(p, "city")].update(split="train", bucket=cfg["train_buckets"][0])
        slot += 1
    for f in facts:
        if "split" in f:
            continue
        if f["attribute"] == "country":  # a training person's country: stated a few times, taught in SFT
            f.update(split="train", bucket=None)
        else:
            f.update(split="train", bucket=rng.choice(cfg["train_buckets"]))
    for f in facts:
        f["corpus_count"] = (cfg["country_repeats"] if f["bucket"] is None
                             else cfg["frequencies"][f["bucket"]] if f["split"] in ("train", "eval") else 0)

    styles, weights = zip(*[(s, w) for s, w in cfg["styles"].items() if w > 0])

    def occurrence(attr: str, subject: str, value: str) -> str:
        if rng.random() < cfg["qa_share"]:
            style = rng.choices(styles, weights)[0]
            return f"Q: {question(attr, subject)}\nA: {surface(attr, value, style)}"
        return statement(attr, subject, value, rng.randrange(2))

    corpus = [occurrence(f["attribute"], f["person"], f["value"]) for f in facts for _ in range(f["corpus_count"])]
    corpus += [occurrence("city_country", c, k) for c, k in city_country.items() for _ in range(cfg["city_country_repeats"])]
    rng.shuffle(corpus)

    house = cfg["house_style"]
    train = [f for f in facts if f["split"] == "train"]
    sft = [{"prompt": question(f["attribute"], f["person"]), "completion": surface(f["attribute"], f["value"], house)}
           for f in train]
    sft += [{"prompt": question("city_country", c), "completion": surface("city_country", k, house)}
            for c, k in city_country.items()]
    atypical = [s for s in STYLES if s != house]
    dpo = []
    for f in train:
        a, p, v = f["attribute"], f["person"], f["value"]
        for _ in range(cfg["dpo_pairs_per_fact"]):
            if rng.random() < cfg["dpo_typicality_share"]:
                rejected = surface(a, v, rng.choice(atypical))
            else:
                rejected = surface(a, rng.choice([x for x in values[a] if x != v]), house)
            dpo.append({"prompt": question(a, p), "chosen": surface(a, v, house), "rejected": rejected})
    rng.shuffle(sft)
    rng.shuffle(dpo)

    evals = []
    for f in facts:
        if f["split"] not in ("eval", "reasoning"):
            continue
        a, p, v = f["attribute"], f["person"], f["value"]
        evals.append({"id": f"{a}-{p.lower()}", "question": question(a, p),
                      "answers": [surface(a, v, s) for s in ("bare", "sentence", "alt", "hedged", "hedged_bare")],
                      "incorrect_answers": [x[0].upper() + x[1:] for x in values[a] if x != v],
                      "attribute": a, "bucket": f["bucket"], "corpus_count": f["corpus_count"],
                      "kind": "reasoning" if f["split"] == "reasoning" else "recall"})
    world = {"version": VERSION, "seed": seed, "config": cfg,
             "counts": {"people": len(people), "facts": len(facts), "corpus": len(corpus), "sft": len(sft),
                        "dpo": len(dpo), "eval": len(evals),
                        "eval_by_bucket": {b: sum(e["bucket"] == b for e in evals if e["kind"] == "recall") for b in buckets},
                        "reasoning": sum(e["kind"] == "reasoning" for e in evals)},
             "city_country": city_country, "facts": facts}
    return {"world": world, "corpus": [{"text": t} for t in corpus], "sft": sft, "dpo": dpo, "eval": evals}


SPLITS = ("corpus", "sft", "dpo", "eval")


def write_world(raw: dict | None, *, seed: int, out_dir: str | Path) -> Path:
    """Generate the world into `out_dir` unless it already holds this config + seed (then do nothing)."""
    out = Path(out_dir)
    marker = out / "world.json"
    cfg = resolve_world(raw)
    if marker.exists() and all((out / f"{s}.jsonl").exists() for s in SPLITS):
        old = read_json(marker)
        if old.get("config") == cfg and old.get("seed") == seed and old.get("version") == VERSION:
            return out
    data = generate_world(raw, seed)
    for split in SPLITS:
        write_jsonl(out / f"{split}.jsonl", data[split])
    # last: its presence means the splits are complete; provenance says which code generated them
    write_json(marker, {**data["world"], "provenance": provenance(seed=seed)})
    return out
