"""Synthetic NER sentences for training and checking the demo checkpoint's heads.

A seeded generator: sentence templates filled from small gazetteers of people, organizations,
places, dates, products and events, entity-free sentences mixed in, in gliner's training format
(`tokenized_text`, inclusive word spans in `ner`, and `ner_negatives`: a random subset of the
labels absent from the sentence, so that the label sets the model sees vary in size and order).
Nothing here is real data: the demo it trains is a small model for trying the pipeline, not a
released GLiNER. `REALISTIC` holds a few hand-written sentences in natural form (names not in
the gazetteers, punctuation attached) to check that it is not only the templates it learned.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

FIRST = (
    "Anna Peter Maria John Li Ahmed Sofia Carlos Yuki Olga David Fatima Lukas Emma Ravi Chloe Mateo Aisha "
    "Ivan Mei Kofi Ingrid Pablo Hana Omar Lena Tariq Noor Jonas Elena Thomas Sarah Michael Laura James "
    "Julia Robert Helen Daniel Clara Paul Nadia Victor Irene George Alice Martin Rosa Felix Diana"
).split()
LAST = (
    "Schmidt Garcia Smith Chen Khan Rossi Tanaka Ivanova Dubois Okafor Novak Silva Müller Kowalski Haddad "
    "Nguyen Larsen Mensah Costa Park Fischer Moreau Jensen Ali Johnson Brown Weber Martin Lopez Wagner "
    "Becker Hoffmann Bianchi Petrov Santos Kim Wright Clarke"
).split()
PLACE = ["Paris", "Berlin", "Tokyo", "Lagos", "Lima", "Toronto", "Mumbai", "Cairo", "Oslo", "Madrid", "Seoul",
         "Nairobi", "São Paulo", "New York", "Buenos Aires", "Kraków", "Jakarta", "Hanoi", "Lisbon", "Vienna",
         "Chicago", "Accra", "Kenya", "Brazil", "Germany", "Japan", "Canada", "Peru", "Rome", "Athens",
         "Dublin", "Sydney", "Boston", "Munich", "Warsaw", "Prague", "Italy", "Spain", "India",
         "Mexico"]  # fmt: skip
ORG = ["Acme Corp", "Globex", "Initech", "the United Nations", "Siemens", "Toyota", "the World Bank", "Nokia",
       "Oxfam", "Unilever", "the Red Cross", "Stanford University", "Deutsche Bahn", "Microsoft", "Reuters",
       "the European Commission", "Samsung", "Greenpeace", "FIFA", "Harvard University", "Airbus",
       "the BBC", "Volkswagen", "Intel", "the IMF", "Oxford University", "Shell", "Nestlé"]  # fmt: skip
MONTH = "January February March April May June July August September October November December".split()
PRODUCT = ["iPhone 15", "Model 3", "PlayStation 5", "Galaxy S24", "Windows 11", "Kindle", "Boeing 737",
           "ThinkPad X1", "Photoshop", "Corolla", "Walkman", "Xbox"]  # fmt: skip
EVENT = ["the Olympic Games", "the World Cup", "Expo 2020", "the climate summit", "the Berlin Marathon",
         "Woodstock", "the Cannes Film Festival", "the G20 summit", "Wimbledon",
         "the Paris Air Show"]  # fmt: skip
NOUN = (
    "report plan market price team budget city road school river weather phone project meeting "
    "deal crowd storm data museum bridge"
).split()
TEMPLATES = [
    "{person} works for {org} in {place} .",
    "On {date} , {person} visited {place} .",
    "{person} visited {place} .",
    "{person} visited {place} on {date} .",
    "{person} lives in {place} .",
    "{person} travelled to {place} last week .",
    "{org} opened an office in {place} on {date} .",
    "{person} and {person2} met at the {org} headquarters .",
    "{person} met {person2} in {place} .",
    "The mayor of {place} , {person} , spoke on {date} .",
    "{person} left {org} to join {org2} in {place} .",
    "After the storm on {date} , {org} sent help to {place} .",
    "In {place} , {person} founded {org} .",
    "{person} was born in {place} on {date} .",
    "Shares of {org} fell after {person} resigned .",
    "{org} unveiled the {product} in {place} on {date} .",
    "{person} bought a {product} last week .",
    "The {product} made by {org} sold out in {place} .",
    "{person} won a medal at {event} in {place} .",
    "{event} will take place in {place} in {date} .",
    "{org} sponsored {event} on {date} .",
    "Critics said the {product} was too expensive .",
    "Thousands attended {event} despite the rain .",
    "The {noun} was delayed again , officials said .",
    "Nobody expected the {noun} to change so quickly .",
    "{person} said the {noun} would be ready by {date} .",
    "Prices in {place} rose sharply in {date} .",
    "A spokesperson for {org} declined to comment on the {noun} .",
    "{person} , the head of {org} , flew to {place} for {event} .",
    "We met {person} near the old {noun} in {place} .",
    "the {noun} and the {noun2} are both on the agenda .",
    "{person} reviewed the {product} for {org} .",
    "Fans of {person} gathered in {place} before {event} .",
    "Yesterday {person} arrived in {place} .",
    "{org} hired {person} as its new director .",
    "The {noun} in {place} is closed until {date} .",
]
SLOT_LABEL = {
    "person": "person",
    "org": "organization",
    "place": "location",
    "date": "date",
    "product": "product",
    "event": "event",
}
LABELS = sorted(set(SLOT_LABEL.values()))
HELDOUT_SEED = 10_000

# Hand-written sentences in natural form: (text, [(entity text, label), ...]); none of these
# names is in the gazetteers. Scored with REALISTIC_LABELS offered.
REALISTIC: list[tuple[str, list[tuple[str, str]]]] = [
    ("Angela Merkel visited Paris.", [("Angela Merkel", "person"), ("Paris", "location")]),
    ("Barack Obama was born in Honolulu.", [("Barack Obama", "person"), ("Honolulu", "location")]),
    (
        "Marie Curie moved to Warsaw in 1891.",
        [("Marie Curie", "person"), ("Warsaw", "location"), ("1891", "date")],
    ),
    ("Google opened a new office in Zurich.", [("Google", "organization"), ("Zurich", "location")]),
    (
        "Nelson Mandela met Kofi Annan in Geneva.",
        [("Nelson Mandela", "person"), ("Kofi Annan", "person"), ("Geneva", "location")],
    ),
    ("The weather was pleasant all week.", []),
    (
        "Elon Musk left PayPal and founded SpaceX.",
        [("Elon Musk", "person"), ("PayPal", "organization"), ("SpaceX", "organization")],
    ),
    ("Frida Kahlo lived in Mexico City.", [("Frida Kahlo", "person"), ("Mexico City", "location")]),
    (
        "On 4 July 2023, Serena Williams arrived in London.",
        [("4 July 2023", "date"), ("Serena Williams", "person"), ("London", "location")],
    ),
    (
        "Amazon hired Priya Sharma in Seattle.",
        [("Amazon", "organization"), ("Priya Sharma", "person"), ("Seattle", "location")],
    ),
]
REALISTIC_LABELS = ["person", "organization", "location", "date"]

Entity = tuple[int, int, str]  # character start, end, label
Predict = Callable[[str, list[str]], list[dict[str, Any]]]


def _date(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return f"{rng.randint(1, 28)} {rng.choice(MONTH)} {rng.randint(1950, 2025)}"
    if kind == 1:
        return f"{rng.choice(MONTH)} {rng.randint(1990, 2025)}"
    if kind == 2:
        return f"{rng.choice(MONTH)} {rng.randint(1, 28)}"
    return str(rng.randint(1900, 2025))


def example(rng: random.Random) -> dict[str, Any]:
    """One synthetic sentence in gliner's training format: words, inclusive word spans, and a
    random subset of the absent labels as negatives."""
    person = f"{rng.choice(FIRST)} {rng.choice(LAST)}" if rng.random() < 0.8 else rng.choice(FIRST)
    values = {
        "person": person,
        "person2": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "org": rng.choice(ORG),
        "org2": rng.choice(ORG),
        "place": rng.choice(PLACE),
        "date": _date(rng),
        "product": rng.choice(PRODUCT),
        "event": rng.choice(EVENT),
        "noun": rng.choice(NOUN),
        "noun2": rng.choice(NOUN),
    }
    words: list[str] = []
    ner: list[list[Any]] = []
    for token in rng.choice(TEMPLATES).split():
        if not token.startswith("{"):
            words.append(token)
            continue
        slot = token[1:-1]
        filled = values[slot].split()
        label = SLOT_LABEL.get(slot.rstrip("2"))
        if label is not None:
            ner.append([len(words), len(words) + len(filled) - 1, label])
        words += filled
    absent = [label for label in LABELS if label not in {e[2] for e in ner}]
    negatives = rng.sample(absent, rng.randint(0 if ner else 1, len(absent)))
    return {"tokenized_text": words, "ner": ner, "ner_negatives": negatives}


def heldout(n: int) -> list[dict[str, Any]]:
    """`n` held-out sentences (seeds disjoint from any training run's stream)."""
    return [example(random.Random(HELDOUT_SEED + i)) for i in range(n)]


def _f1(tp: int, n_pred: int, n_gold: int) -> float:
    precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _score(predict: Predict, items: Sequence[tuple[str, set[Entity]]], labels: list[str]) -> float:
    tp = n_pred = n_gold = 0
    for text, gold in items:
        pred = {(p["start"], p["end"], p["label"]) for p in predict(text, labels)}
        tp += len(gold & pred)
        n_pred += len(pred)
        n_gold += len(gold)
    return _f1(tp, n_pred, n_gold)


def gold_f1(predict: Predict, examples: Sequence[dict[str, Any]], labels: list[str] = LABELS) -> float:
    """Entity F1 of `predict(text, labels)` against the synthetic gold (start, end, label), the
    words joined by single spaces."""
    items = []
    for ex in examples:
        words = ex["tokenized_text"]
        starts, pos = [], 0
        for w in words:
            starts.append(pos)
            pos += len(w) + 1
        gold = {(starts[s], starts[e] + len(words[e]), label) for s, e, label in ex["ner"] if label in labels}
        items.append((" ".join(words), gold))
    return _score(predict, items, labels)


def realistic_f1(predict: Predict) -> float:
    """Entity F1 of `predict` on :data:`REALISTIC` with :data:`REALISTIC_LABELS` offered."""
    items = []
    for text, entities in REALISTIC:
        gold = {(text.index(span), text.index(span) + len(span), label) for span, label in entities}
        items.append((text, gold))
    return _score(predict, items, REALISTIC_LABELS)
