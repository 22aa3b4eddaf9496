"""Tiny, deterministic Hugging Face backbones built offline, for tests and demos.

Nothing here touches a model hub: the tokenizers are trained in a fraction of a second on
a small multilingual corpus that ships inside this module (:data:`CORPUS`), and the
weights are random with a fixed seed.

* :func:`make_tiny_deberta_v3` -- a DeBERTa-v3-like directory: a SentencePiece *unigram*
  model (``spm.model``; ``[PAD]``/``[CLS]``/``[SEP]``/``[UNK]`` at ids 0-3, ``[MASK]``
  appended after the pieces, like ``microsoft/deberta-v3-small``) wrapped in transformers'
  ``DebertaV2Tokenizer`` (saved with its ``tokenizer.json``), and a ``DebertaV2Model``
  with deberta-v3's attention settings (relative attention, 256 position buckets,
  ``p2c|c2p``, shared attention keys, layer-normed relative embeddings, no absolute
  positions).
* :func:`make_tiny_bert` -- a BERT-like directory: a WordPiece vocabulary
  (``vocab.txt`` + ``tokenizer.json``, BERT normalizer/pre-tokenizer, ``[CLS] X [SEP]``)
  and a ``BertModel``.
* :func:`build_gliner` -- a random-init GLiNER (uni- or bi-encoder, span or token level)
  on such local backbones, with an optional ``logit_scale`` that spreads the sigmoid
  scores over (0, 1) so that thresholds and decoding are actually exercised.
* :func:`tokenizer_roundtrip_mismatches` -- compares ``tokenizers.Tokenizer.from_file``
  on a saved ``tokenizer.json`` with ``AutoTokenizer.from_pretrained`` on pre-split words.

Determinism: the same call gives byte-identical files (weights, ``tokenizer.json``,
``spm.model``, ``vocab.txt``, configs) across calls and processes. The WordPiece
vocabulary is *not* learnt with ``tokenizers.trainers.WordPieceTrainer`` on purpose: that
trainer breaks ties between equally frequent merges in hash-map order, which changes from
one process to the next. Instead, SentencePiece's BPE (deterministic with one thread)
learns the subwords on BERT-pre-tokenized words and they are converted to WordPiece form.

All torch randomness happens inside ``torch.random.fork_rng``: the caller's global RNG
state is left untouched.
"""

from __future__ import annotations

import contextlib
import io
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import gliner

__all__ = [
    "CALIBRATION_LABEL_SETS",
    "CORPUS",
    "DEFAULT_LOGIT_SCALE",
    "GLINER_TOKENS",
    "SAMPLE_TEXTS",
    "build_gliner",
    "calibrate_head",
    "corpus_lines",
    "head_scores",
    "make_tiny_bert",
    "make_tiny_deberta_v3",
    "scale_head_logits",
    "tokenizer_roundtrip_mismatches",
]

# Tokens that gliner 0.2.29 adds to the backbone tokenizer (``_get_special_tokens``).
GLINER_TOKENS = ("[FLERT]", "<<ENT>>", "<<SEP>>")

# ``logit_scale`` for :func:`build_gliner`: the standard deviation of the calibrated
# logits. For N(0, 2^2) logits, P(|x| < logit(0.7) = 0.847) = 0.33, so about a third of
# the scores fall in each of (0, 0.3), (0.3, 0.7) and (0.7, 1) (checked in the tests).
DEFAULT_LOGIT_SCALE = 2.0
# Above this, sigmoid(logit) is 0 or 1 (to float32 precision) for most pairs.
_MAX_LOGIT_SCALE = 16.0

# ---------------------------------------------------------------------------------------
# Built-in corpus. Varied on purpose: punctuation, hyphens, numbers, dates, URLs, accents,
# CJK, Korean, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, emoji (with skin tones,
# flags and variation selectors), currency and math symbols, tabs and runs of spaces.
# ---------------------------------------------------------------------------------------
CORPUS = """\
Angela Merkel visited Tokyo in 2019 and met the prime minister at 10:30 a.m.
Barack Obama was born on August 4, 1961, in Honolulu, Hawaii.
The quick brown fox jumps over the lazy dog; the dog doesn't care.
Apple Inc. reported revenue of $89.5 billion for Q4 2023, up 8% year-over-year.
Dr. Jean-Luc Picard, captain of the U.S.S. Enterprise (NCC-1701-D), gave the order.
She ordered a café au lait and a croissant at the little café near the Louvre.
His naïve approach to the problem surprised everyone at the coöperative.
Zürich, Genève and Bern are the largest cities in Switzerland; Basel is close behind.
The Ångström unit, named after Anders Jonas Ångström, equals 10^-10 metres.
Crème brûlée, jalapeño, façade, résumé, déjà vu, piñata and smörgåsbord are loanwords.
Marie Skłodowska-Curie won the Nobel Prize in Physics (1903) and in Chemistry (1911).
Łódź, Kraków and Gdańsk are cities in Poland; Praha and Brno are in Czechia.
São Paulo, Bogotá and Ciudad de México are among the largest cities in the Americas.
Straße, Fußgänger, Mädchen, Übermensch and Ökonomie are German words.
Dobrý den! Jak se máte? Děkuji, mám se dobře.
The well-known state-of-the-art model achieved an F1-score of 92.4 on CoNLL-2003.
Call +1 (555) 123-4567 or e-mail info@example.com before 5 p.m. on Friday.
Visit https://www.example.org/docs/index.html?lang=en&page=2 for more details.
The meeting is scheduled for 2024-03-15T09:00:00Z in Conference Room B-12.
Temperatures ranged from -5°C to 32°C, i.e. from 23°F to 90°F.
In 1492, Columbus sailed the ocean blue; in 1969, Apollo 11 landed on the Moon.
The company's CEO, Satya Nadella, announced a partnership with OpenAI on Monday.
Microsoft, Google, Amazon and Meta compete in cloud computing and artificial intelligence.
The European Union (EU) has 27 member states; the United Nations (UN) has 193.
Mount Everest is 8,848.86 m tall, and the Mariana Trench is about 10,994 m deep.
"I think, therefore I am," wrote René Descartes in his Discourse on the Method.
Leonardo da Vinci painted the Mona Lisa between 1503 and 1519 in Florence.
William Shakespeare's Hamlet asks: "To be, or not to be, that is the question."
The U.K. voted to leave the E.U. in June 2016 -- a decision known as Brexit.
NASA's James Webb Space Telescope launched on December 25, 2021, from French Guiana.
The patient was prescribed 500 mg of amoxicillin three times a day for 7 days.
Python 3.11 is faster than Python 3.10; use `pip install numpy==1.26.4` to upgrade.
The function returns None if the key is missing, otherwise it raises a KeyError.
Named entity recognition finds persons, organizations, locations, dates and products.
Tim Berners-Lee invented the World Wide Web at CERN near Geneva in 1989.
Serena Williams won 23 Grand Slam singles titles; Roger Federer won 20.
The Eiffel Tower, completed in 1889, is 330 metres tall and is located in Paris.
Volkswagen, BMW and Mercedes-Benz are headquartered in Wolfsburg, Munich and Stuttgart.
Toyota Motor Corporation was founded by Kiichiro Toyoda in 1937 in Aichi, Japan.
The Amazon River flows through Peru, Colombia and Brazil into the Atlantic Ocean.
Kofi Annan, a Ghanaian diplomat, served as Secretary-General of the United Nations.
Nelson Mandela was released from prison on 11 February 1990 after 27 years.
Ludwig van Beethoven composed nine symphonies; the Ninth premiered in Vienna in 1824.
Frida Kahlo and Diego Rivera lived in the Casa Azul in Coyoacán, Mexico City.
The Great Wall of China stretches more than 21,000 kilometres across northern China.
Hugging Face, spaCy, PyTorch and ONNX Runtime are popular machine-learning tools.
Self-driving cars, e-commerce, co-operation and twenty-one use hyphens.
It's 3:45 p.m.; we've got 2½ hours left, isn't that right?
Wow!!! That's amazing... Really?! Yes -- absolutely.
The researchers at Stanford University published their findings in Nature last week.
According to the World Health Organization, the vaccine reduced hospitalizations by 90%.
The Federal Reserve raised interest rates by 0.25 percentage points on Wednesday.
Goldman Sachs, JPMorgan Chase and Morgan Stanley reported strong quarterly earnings.
The football match between Real Madrid and FC Barcelona ended in a 2-2 draw.
Lionel Messi signed with Inter Miami after leaving Paris Saint-Germain in 2023.
The hospital in Boston treated more than 1,200 patients during the winter season.
Professor Ada Lovelace wrote the first algorithm intended for Charles Babbage's machine.
The novel was translated into forty languages and sold over ten million copies.
Customers can return products within thirty days if they keep the original receipt.
The government announced new regulations for electric vehicles and charging stations.
Scientists discovered a new species of frog in the rainforests of Madagascar.
The orchestra performed Mozart's Requiem at the Royal Albert Hall in London.
Engineers are testing the bridge before it opens to traffic next spring.
The museum's collection includes paintings by Rembrandt, Vermeer and Van Gogh.
After the earthquake, volunteers distributed water, blankets and medicine.
The startup raised $12 million in a Series A round led by Sequoia Capital.
Our team will present the results at the annual conference in San Francisco.
The train from Amsterdam to Brussels takes about two hours and costs €45.
Please submit your application, including a cover letter, by 31 January 2025.
東京タワーは東京都港区にある電波塔です。
東京は日本の首都であり、人口は約1400万人です。
安倍晋三は日本の元内閣総理大臣である。
トヨタ自動車は愛知県豊田市に本社を置く自動車メーカーです。
私は毎朝コーヒーを飲みます。今日はいい天気ですね。
北京是中华人民共和国的首都，也是政治和文化中心。
李白是唐代著名的诗人，被称为诗仙。
上海浦东新区有很多高楼大厦，例如上海中心大厦。
서울은 대한민국의 수도입니다. 삼성전자는 수원에 본사가 있습니다.
안녕하세요! 만나서 반갑습니다. 저는 학생입니다.
Москва — столица России, а Санкт-Петербург — её культурная столица.
Лев Толстой написал роман «Война и мир» в 1860-х годах.
Юрий Гагарин стал первым человеком в космосе 12 апреля 1961 года.
Київ є столицею України; Дніпро тече через місто.
Привет, как дела? Всё хорошо, спасибо!
القاهرة هي عاصمة مصر وأكبر مدنها.
ولد نجيب محفوظ في القاهرة عام 1911 وحصل على جائزة نوبل في الأدب.
مرحبا بكم في دبي، مدينة ناطحات السحاب.
ירושלים היא עיר עתיקה; תל אביב שוכנת לחוף הים התיכון.
דוד בן-גוריון היה ראש הממשלה הראשון של ישראל.
Αθήνα είναι η πρωτεύουσα της Ελλάδας. Ο Σωκράτης ήταν φιλόσοφος.
Η Ακρόπολη βρίσκεται στο κέντρο της Αθήνας.
नई दिल्ली भारत की राजधानी है। महात्मा गांधी का जन्म पोरबंदर में हुआ था।
กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย
İstanbul, Türkiye'nin en kalabalık şehridir; Ankara başkenttir.
Hà Nội là thủ đô của Việt Nam; Thành phố Hồ Chí Minh là thành phố lớn nhất.
Reykjavík er höfuðborg Íslands. Þórður og Guðrún búa þar.
København er Danmarks hovedstad; Oslo og Stockholm ligger i nærheten.
Helsinki on Suomen pääkaupunki, ja Tampere on toiseksi suurin kaupunki.
Budapest Magyarország fővárosa; a Duna kettészeli a várost.
Bucureşti este capitala României; Cluj-Napoca este în Transilvania.
Lisboa é a capital de Portugal, e o Porto é famoso pelo vinho.
Madrid es la capital de España; Barcelona está en Cataluña.
Roma è la capitale d'Italia; Milano è il centro finanziario del paese.
Paris est la capitale de la France ; Lyon et Marseille sont très grandes.
Amsterdam is de hoofdstad van Nederland, maar de regering zit in Den Haag.
Berlin ist die Hauptstadt Deutschlands; München liegt in Bayern.
I love pizza 🍕 and sushi 🍣! 😀😂🎉👍❤️🔥
Let's celebrate 🎂🥳 at 8 pm 🕗 — see you there 👋🙂
The weather today: ☀️ 25°C, tomorrow: 🌧️ 18°C ⛈️.
Flags: 🇩🇪 🇯🇵 🇺🇸 🇫🇷 and hands: 👍🏽 👏🏿 ✌️
Math: α + β = γ, ∑x² ≥ 0, π ≈ 3.14159, √2 ≈ 1.414, ∞ > 10⁹.
Prices: €19.99, £12.50, ¥1,200, ₹499, $5 and ₩10,000.
© 2024 Example Corp.™ All rights reserved®. § 4.2 ¶ 3.
Tabs\tand   multiple   spaces should be handled gracefully.
"""

# Texts for round-trip checks and demos: they mix what the corpus has with what it lacks
# (unseen words and characters, which must map to [UNK] / single pieces identically).
SAMPLE_TEXTS: tuple[str, ...] = (
    "Angela Merkel visited 東京タワー in 2019.",
    "Dr. Jean-Luc Picard met Zürich's mayor at the café on 2024-03-15 (10:30 a.m.).",
    "Her naïve résumé listed Apple Inc., IBM and state-of-the-art NLP -- wow!",
    "北京和上海是中国的大城市。東京タワーは333メートルです。",
    "Москва — столица России; Юрий Гагарин полетел в 1961 году.",
    "القاهرة هي عاصمة مصر. ירושלים היא עיר עתיקה.",
    "I love pizza 🍕 and sushi 🍣!!! 😀 👍🏽 🇩🇪 ❤️",
    "Prices: €19.99 / £12.50 / ¥1,200 — call +1 (555) 123-4567.",
    "Unseen words: Xylophonic quasquicentennial Ωmega ꙮ zzzyyyxxx ǅemal.",
    "UPPER lower MiXeD CaSe ÉCOLE Ökonomie ΣΊΣΥΦΟΣ İstanbul",
    "Tabs\tand   multiple   spaces , trailing punctuation .",
    "Combining: cafe\u0301 n\u0303 vs café ñ; ligature ﬁ; full-width ＡＢＣ１２３; NBSP\u00a0here",
    "Special-looking text: [CLS] [SEP] [MASK] <<ENT>> <<SEP>> [FLERT] [UNK] <s> </s>",
)


@contextlib.contextmanager
def _no_progress_bars():
    """Silence transformers' "Writing model shards" / "Loading weights" bars meanwhile."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def corpus_lines() -> list[str]:
    """The non-empty lines of :data:`CORPUS`."""
    return [line for line in CORPUS.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------
# DeBERTa-v3
# ---------------------------------------------------------------------------------------
def _keep_frequent_chars(lines: Sequence[str], budget: int) -> list[str]:
    """Drop from ``lines`` every character but the ``budget`` most frequent (ties by code
    point) so that a small vocabulary can hold all remaining characters; the dropped ones
    are unknown to the trained model."""
    counts = Counter(c for line in lines for c in line if not c.isspace())
    if len(counts) <= budget:
        return list(lines)
    keep = {c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:budget]}
    return [
        line for line in ("".join(c for c in s if c in keep or c.isspace()) for s in lines) if line.strip()
    ]


def _train_sentencepiece(lines: Sequence[str], vocab_size: int, **options: Any) -> bytes:
    """Train a SentencePiece model in memory, single-threaded (hence deterministic)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=vocab_size,
        character_coverage=1.0,
        num_threads=1,
        hard_vocab_limit=False,  # a small corpus may not fill a large vocabulary
        shuffle_input_sentence=False,
        minloglevel=2,
        **options,
    )
    return buf.getvalue()


def _deberta_v3_tokenizer(vocab_size: int):
    """A ``DebertaV2Tokenizer`` over a freshly trained unigram model, and the model bytes."""
    import sentencepiece as spm
    from transformers import DebertaV2Tokenizer

    if vocab_size < 32:
        raise ValueError(f"vocab_size must be at least 32, got {vocab_size}")
    # transformers' DebertaV2Tokenizer normalizes with NFC (not with the spm model's
    # rules), so learn the pieces on NFC text with SentencePiece's normalization off.
    lines = [unicodedata.normalize("NFC", line) for line in corpus_lines()]
    # 5 = [MASK] + the 4 pieces at ids 0-3; keep a quarter of the rest for subwords.
    lines = _keep_frequent_chars(lines, (vocab_size - 5) * 3 // 4)
    proto = _train_sentencepiece(
        lines,
        vocab_size - 1,  # room for [MASK], appended after the pieces as in deberta-v3
        model_type="unigram",
        normalization_rule_name="identity",
        pad_id=0,
        pad_piece="[PAD]",
        bos_id=1,
        bos_piece="[CLS]",
        eos_id=2,
        eos_piece="[SEP]",
        unk_id=3,
        unk_piece="[UNK]",
    )
    sp = spm.SentencePieceProcessor(model_proto=proto)
    pieces = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size())]
    # Built from the piece list rather than from spm.model so that tokenizer_config.json
    # carries no load-time kwargs; the pipeline is identical (transformers 5 builds the
    # same normalizer/pre-tokenizer/post-processor from spm.model).
    tokenizer = DebertaV2Tokenizer(
        vocab=pieces,
        unk_id=sp.unk_id(),
        do_lower_case=False,
        split_by_punct=False,
        bos_token="[CLS]",
        eos_token="[SEP]",
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    return tokenizer, proto


def make_tiny_deberta_v3(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 1000,
    seed: int = 0,
    initializer_range: float = 0.1,
) -> Path:
    """Write a tiny random DeBERTa-v3-like backbone (model + tokenizer) to ``out_dir``.

    ``initializer_range`` defaults to 0.1, not pretraining's 0.02: a 2-layer random encoder
    initialised at 0.02 gives nearly identical token states, and heads calibrated to spread
    scores (``build_gliner(logit_scale=...)``) then amplify float32 noise to ~2e-4 on the
    probabilities, which flips near-ties between runtimes. At 0.1 the noise stays ~1e-5.

    The directory holds ``config.json``, ``model.safetensors``, ``spm.model``,
    ``tokenizer.json`` and ``tokenizer_config.json``, and loads fully offline with
    ``AutoModel``/``AutoTokenizer.from_pretrained``. ``vocab_size`` is the size of the
    embedding matrix; the tokenizer has at most that many tokens (fewer only when the
    built-in corpus cannot fill the vocabulary: about 1100 pieces at most).
    """
    import torch
    from transformers import DebertaV2Config, DebertaV2Model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, proto = _deberta_v3_tokenizer(vocab_size)

    # microsoft/deberta-v3-small's config.json, scaled down. position_buckets,
    # norm_rel_ebd and share_att_key are not declared fields of DebertaV2Config: they are
    # kept as extra attributes, saved in config.json and read by the model with getattr.
    fields: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": 4 * hidden_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "initializer_range": initializer_range,
        "layer_norm_eps": 1e-7,
        "relative_attention": True,
        "max_relative_positions": -1,
        "position_buckets": 256,
        "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "position_biased_input": False,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = DebertaV2Config(**fields)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DebertaV2Model(config).eval()
    with _no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "spm.model").write_bytes(proto)
    return out


# ---------------------------------------------------------------------------------------
# BERT
# ---------------------------------------------------------------------------------------
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _bert_pretokenize(lines: Iterable[str], lowercase: bool) -> list[list[str]]:
    """Words as BERT sees them: BERT normalizer (lowercasing strips accents) + splitter."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return [[w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))] for line in lines]


def _wordpiece_vocab(vocab_size: int, lowercase: bool) -> list[str]:
    """A deterministic WordPiece vocabulary learnt on the built-in corpus.

    Specials, then every character needed to spell every corpus word (word-initial form
    ``c`` and continuation form ``##c``, most frequent first), then SentencePiece BPE
    subwords converted to WordPiece (``▁xy`` -> ``xy``, ``xy`` -> ``##xy``), in merge order.
    """
    import sentencepiece as spm

    words_per_line = _bert_pretokenize(corpus_lines(), lowercase)
    initial: Counter[str] = Counter()
    continuation: Counter[str] = Counter()
    for words in words_per_line:
        for word in words:
            initial[word[0]] += 1
            continuation.update(word[1:])

    def by_frequency(counter: Counter[str], prefix: str) -> list[str]:
        return [prefix + c for c, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]

    vocab: list[str] = list(_BERT_SPECIALS)
    seen = set(vocab)

    def add(tokens: Iterable[str]) -> None:
        for token in tokens:
            if token not in seen:
                seen.add(token)
                vocab.append(token)

    add(by_frequency(initial, ""))
    add(by_frequency(continuation, "##"))

    proto = _train_sentencepiece(
        [" ".join(words) for words in words_per_line],
        max(vocab_size, len(vocab) + 8),
        model_type="bpe",
        normalization_rule_name="identity",
        split_by_whitespace=True,
        add_dummy_prefix=True,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_id=0,
    )
    sp = spm.SentencePieceProcessor(model_proto=proto)
    merged = []
    for i in range(sp.get_piece_size()):
        if sp.is_unknown(i) or sp.is_control(i):
            continue
        piece = sp.id_to_piece(i)
        if piece == "▁":
            continue
        merged.append(piece[1:] if piece.startswith("▁") else "##" + piece)
    add(merged)
    return vocab[:vocab_size]


def make_tiny_bert(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 1000,
    seed: int = 0,
    lowercase: bool = True,
    initializer_range: float = 0.1,
) -> Path:
    """Write a tiny random BERT backbone (model + WordPiece tokenizer) to ``out_dir``.

    The directory holds ``config.json``, ``model.safetensors``, ``vocab.txt``,
    ``tokenizer.json`` and ``tokenizer_config.json`` (``model_max_length`` 512, like
    bert-base), and loads fully offline with ``AutoModel``/``AutoTokenizer``.
    ``lowercase=True`` is bert-base-uncased-like (lowercasing + accent stripping),
    ``False`` cased.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    if vocab_size < len(_BERT_SPECIALS) + 1:
        raise ValueError(f"vocab_size must be at least {len(_BERT_SPECIALS) + 1}, got {vocab_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokens = _wordpiece_vocab(vocab_size, lowercase)
    tokenizer = BertTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        do_lower_case=lowercase,
        tokenize_chinese_chars=True,
        strip_accents=None,
        model_max_length=512,
    )

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=initializer_range,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config).eval()
    with _no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------
# Tokenizer round trip
# ---------------------------------------------------------------------------------------
def _split_words(text: str) -> list[str]:
    """gliner 0.2.29's default ``WhitespaceTokenSplitter`` (``\\w+(?:[-_]\\w+)*|\\S``)."""
    import re

    return [m.group() for m in re.finditer(r"\w+(?:[-_]\w+)*|\S", text)]


def tokenizer_roundtrip_mismatches(
    model_dir: str | Path,
    texts: Sequence[str] = SAMPLE_TEXTS,
    *,
    tokenizer: Any = None,
) -> list[str]:
    """Differences between ``tokenizers`` on ``model_dir/tokenizer.json`` and transformers.

    Each text is split into words twice (on whitespace and with gliner's default regex
    splitter); the words are encoded with ``Tokenizer.from_file(...).encode_batch(...,
    is_pretokenized=True)`` and with ``tokenizer(words, is_split_into_words=True)``, where
    ``tokenizer`` defaults to ``AutoTokenizer.from_pretrained(model_dir)``. Returns one
    line per mismatching text (empty when everything is identical).
    """
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # A tokenizer.json saved by gliner carries the padding (and, for BERT, truncation)
    # state of its last batched call; compare unpadded, untruncated ids.
    raw.no_padding()
    raw.no_truncation()
    hf = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_dir)
    batch = [text.split() for text in texts] + [_split_words(text) for text in texts]
    got = [enc.ids for enc in raw.encode_batch(batch, is_pretokenized=True)]
    want = hf(batch, is_split_into_words=True)["input_ids"]
    problems = []
    for words, a, b in zip(batch, got, want):
        if a != b:
            problems.append(f"{words!r}: tokenizers={a} transformers={b}")
    # Plain (not pre-split) strings too: the bi-encoder's labels are encoded that way.
    got = [enc.ids for enc in raw.encode_batch(list(texts))]
    want = hf(list(texts))["input_ids"]
    for text, a, b in zip(texts, got, want):
        if a != b:
            problems.append(f"{text!r} (plain): tokenizers={a} transformers={b}")
    return problems


# ---------------------------------------------------------------------------------------
# GLiNER on local backbones
# ---------------------------------------------------------------------------------------
def _last_linear(module: Any):
    import torch

    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"no nn.Linear in {type(module).__name__}")
    return linears[-1]


def _head_linears(core: Any) -> tuple[str, list[Any]]:
    """``("token", [scorer's last Linear])`` or ``("span", [prompt Linear, span Linear])``."""
    if hasattr(core, "scorer"):
        return "token", [_last_linear(core.scorer)]
    if hasattr(core, "prompt_rep_layer") and hasattr(core, "span_rep_layer"):
        span_layer = getattr(core.span_rep_layer, "span_rep_layer", core.span_rep_layer)
        return "span", [_last_linear(core.prompt_rep_layer), _last_linear(span_layer)]
    raise ValueError(f"don't know the scoring head of {type(core).__name__}")


def scale_head_logits(model: gliner.GLiNER, scale: float) -> list[str]:
    """Multiply the logits of a torch GLiNER's scoring head by ``scale`` (> 0), in place.

    * span models (``UniEncoderSpanModel``, ``BiEncoderSpanModel``, ...): the logits are
      ``einsum(span_rep, prompt_rep)``; the weight and bias of the last ``nn.Linear`` of
      ``prompt_rep_layer`` and of the span representation layer (``out_project`` for the
      marker modes) are each multiplied by ``sqrt(scale)``. Only positively homogeneous
      ops (ReLU, reshapes) follow those layers in every span mode, so the logits are
      multiplied by exactly ``scale``.
    * token-level models: the last ``nn.Linear`` of ``scorer.out_mlp`` (which outputs the
      start/end/inside logits) is multiplied by ``scale``.

    Returns the qualified names of the modified ``nn.Linear`` modules.
    """
    import torch

    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    core = model.model
    kind, linears = _head_linears(core)
    factor = math.sqrt(scale) if kind == "span" else scale
    with torch.no_grad():
        for linear in linears:
            linear.weight.mul_(factor)
            if linear.bias is not None:
                linear.bias.mul_(factor)
    names = {id(m): n for n, m in core.named_modules()}
    return [names[id(linear)] for linear in linears]


# Calibration data for :func:`calibrate_head`: corpus sentences of several scripts, each
# run with every one of these label sets (uni-encoder prompts depend on the label set).
CALIBRATION_LABEL_SETS: tuple[tuple[str, ...], ...] = (
    ("person", "organization", "location", "date"),
    ("city", "company", "country"),
    ("event", "product", "award", "disease", "language"),
)


def _calibration_texts() -> list[str]:
    lines = corpus_lines()
    return lines[:40:2] + lines[70:110:4]


def _capture_head(
    model: Any, texts: Sequence[str], label_sets: Sequence[Sequence[str]]
) -> dict[str, list[Any]]:
    """Run the model on ``texts`` (batches of 8) and collect, per batch, what the scoring
    head saw. Relex models run without their relation layers (the entity logits do not
    depend on them; gliner would score every pair of selected entities, and its
    attention layers crash on a batch with none)."""
    import torch

    core = model.model
    kind, _ = _head_linears(core)
    seen: dict[str, list[Any]] = {"span_mask": [], "span_rep": [], "out": []}
    hooks = [
        core.register_forward_pre_hook(
            lambda _m, _a, kw: seen["span_mask"].append(kw.get("span_mask")), with_kwargs=True
        ),
        core.register_forward_hook(lambda _m, _a, out: seen["out"].append(out)),
    ]
    if kind == "span" or getattr(model.config, "represent_spans", False):  # token decoder: span_logits
        hooks.append(
            core.span_rep_layer.register_forward_hook(lambda _m, _a, out: seen["span_rep"].append(out))
        )
    from .wrappers import relation_layers_removed

    try:
        with torch.no_grad(), relation_layers_removed(core) as relex:
            for labels in label_sets:
                if relex or getattr(model.config, "represent_spans", False):
                    _run_batches(model, list(texts), list(labels))
                else:
                    model.inference(list(texts), list(labels), threshold=0.5, batch_size=8)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _run_batches(model: Any, texts: list[str], labels: list[str], batch_size: int = 8) -> None:
    """gliner's forward on texts in batches, without decoding: relex decoding needs the
    relation outputs that the stashed relation layers would make, and the token decoder's
    decoding fails on spans its batch padding yields (IndexError)."""
    relex = getattr(model.config, "relations_layer", None) is not None
    prepared = model.prepare_batch(texts, labels, **({"relations": []} if relex else {}))
    collator = model.create_collator()
    for lo in range(0, len(prepared["input_x"]), batch_size):
        chunk = prepared["input_x"][lo : lo + batch_size]
        if relex:
            batch = model.collate_batch(chunk, prepared["entity_types"], collator, [])
        else:
            batch = model.collate_batch(chunk, prepared["entity_types"], collator)
        model.run_batch(batch, threshold=0.5)


def _span_head_stats(seen: dict[str, list[Any]]):
    """Mean span and label representations, and the logits of the valid (span, label)s."""
    import torch

    reps, prompts, logits = [], [], []
    for span_mask, span_rep, out in zip(seen["span_mask"], seen["span_rep"], seen["out"]):
        if isinstance(span_rep, tuple):  # span layers with a context encoder
            span_rep = span_rep[0]
        b, length, width, _ = span_rep.shape
        valid = span_mask.reshape(b, length, width).bool()
        label_ok = out.prompts_embedding_mask.bool()
        pair = valid[..., None] & label_ok[:, None, None, :]
        reps.append(span_rep[valid])
        prompts.append(out.prompts_embedding[label_ok])
        logits.append(out.logits[pair])
    return (
        torch.cat(reps).double().mean(0),
        torch.cat(prompts).double().mean(0),
        torch.cat(logits).double(),
    )


def head_scores(model: gliner.GLiNER, texts: Sequence[str], labels: Sequence[str]):
    """Sigmoid scores of every valid (span, label) -- ``(word, label, start/end/inside)``
    for token-level models -- of a torch GLiNER on ``texts``, as one flat float tensor.

    Unlike ``predict_entities(..., flat_ner=False, multi_label=True, threshold=0)``, which
    still drops spans that cross a better-scored one, nothing is filtered.
    """
    import torch

    seen = _capture_head(model, texts, [labels])
    if _head_linears(model.model)[0] == "span":
        *_, logits = _span_head_stats(seen)
    else:
        chunks = []
        for out in seen["out"]:
            pair = out.mask.bool()[:, :, None] & out.prompts_embedding_mask.bool()[:, None, :]
            chunks.append(out.logits[pair].flatten())
        logits = torch.cat(chunks)
    return torch.sigmoid(logits.float())


def calibrate_head(
    model: gliner.GLiNER,
    logit_std: float,
    *,
    texts: Sequence[str] | None = None,
    label_sets: Sequence[Sequence[str]] = CALIBRATION_LABEL_SETS,
) -> None:
    """Centre and rescale a torch GLiNER's head so its logits are ~ N(0, logit_std²).

    A randomly initialised GLiNER gives every (span, label) nearly the same logit, and
    not around 0: the span and label representations share a large common component,
    so the logits sit at e.g. 0.03 +- 0.008 (all scores ~0.51) -- scaling alone would
    push *all* scores to 0 or to 1. Measured on ``texts`` (default: 30 built-in corpus
    sentences), each run with every label set of ``label_sets``:

    * span models: the mean span representation (over valid spans) is subtracted from
      the bias of the span layer's last ``nn.Linear`` and the mean label representation
      from the bias of ``prompt_rep_layer``'s last ``nn.Linear``. With both sides
      centred, a new text's mean logit is a product of two small deviations from the
      calibration means (centring one side only leaves a first-order offset of about
      half a standard deviation per text). Then :func:`scale_head_logits` scales the
      logits, measured again after the centring, to standard deviation ``logit_std``.
    * token-level models: each of the 3 outputs (start, end, inside) of the scorer's last
      ``nn.Linear`` is shifted and scaled to mean 0 and standard deviation ``logit_std``
      over the valid (word, label) pairs.

    Deterministic for a given model and texts (up to float rounding of the CPU kernels).
    """
    import torch

    if not (logit_std > 0 and math.isfinite(logit_std)):
        raise ValueError(f"logit_std must be finite and > 0, got {logit_std}")
    texts = _calibration_texts() if texts is None else list(texts)
    core = model.model
    kind, linears = _head_linears(core)
    was_training = core.training
    model.eval()
    try:
        if kind == "span":
            mean_span, mean_prompt, _ = _span_head_stats(_capture_head(model, texts, label_sets))
            with torch.no_grad():
                for linear, mean in zip(linears, (mean_prompt, mean_span)):
                    if linear.bias is None:
                        raise ValueError("the head's last Linear layers need a bias to centre")
                    linear.bias.sub_(mean.to(linear.bias.dtype))
            *_, logits = _span_head_stats(_capture_head(model, texts, label_sets))
            std = float(logits.std())
            if not std > 0:
                raise ValueError("the calibration logits are constant")
            scale_head_logits(model, logit_std / std)
        else:
            (linear,) = linears
            seen = _capture_head(model, texts, label_sets)
            chunks = []
            for out in seen["out"]:
                pair = out.mask.bool()[:, :, None] & out.prompts_embedding_mask.bool()[:, None, :]
                chunks.append(out.logits[pair])  # (n, 3)
            channels = torch.cat(chunks).double()
            channel_mean, channel_std = channels.mean(0), channels.std(0)
            if not bool((channel_std > 0).all()):
                raise ValueError("the calibration logits are constant")
            factor = logit_std / channel_std
            with torch.no_grad():
                w = linear.weight.double() * factor[:, None]
                b = (linear.bias.double() - channel_mean) * factor
                linear.weight.copy_(w.to(linear.weight.dtype))
                linear.bias.copy_(b.to(linear.bias.dtype))
    finally:
        core.train(was_training)


def calibrate_span_logits(
    model: gliner.GLiNER,
    logit_std: float,
    *,
    texts: Sequence[str] | None = None,
    label_sets: Sequence[Sequence[str]] = CALIBRATION_LABEL_SETS,
) -> None:
    """Token decoder (``represent_spans``): centre and rescale the span logits
    (``einsum(span_rep, prompts)``) to ~ N(0, logit_std²) over the candidate spans, as
    :func:`calibrate_head` does for the token scores (run it first: the candidates are
    the spans the token scores find at 0.5). The mean span representation is taken
    from the bias of the span layer's last ``nn.Linear``, then its weight and bias are
    scaled: the logits are linear in both."""
    import torch

    texts = _calibration_texts() if texts is None else list(texts)
    linear = _last_linear(model.model.span_rep_layer)

    def capture() -> tuple[torch.Tensor, torch.Tensor]:
        seen = _capture_head(model, texts, label_sets)
        outs = seen["out"]
        reps = torch.cat([r[o.span_mask.bool()] for r, o in zip(seen["span_rep"], outs)])
        pairs = [o.span_mask.bool()[:, :, None] & o.prompts_embedding_mask.bool()[:, None, :] for o in outs]
        logits = torch.cat([o.span_logits[p] for o, p in zip(outs, pairs)])
        return reps.double(), logits.double()

    reps, _ = capture()
    if len(reps) == 0:
        raise ValueError("no candidate span at 0.5 to calibrate the span logits on")
    with torch.no_grad():
        linear.bias.sub_(reps.mean(0).to(linear.bias.dtype))
    _, logits = capture()
    std = float(logits.std())
    if not std > 0:
        raise ValueError("the calibration span logits are constant")
    with torch.no_grad():
        linear.weight.mul_(logit_std / std)
        linear.bias.mul_(logit_std / std)


def calibrate_relations(
    model: gliner.GLiNER, logit_std: float, *, texts: Sequence[str] | None = None
) -> None:
    """Centre and rescale a relex GLiNER's relation logits to about N(0, logit_std²).

    Relation logits are ``pair_rep_layer(cat(head, tail)) . rel_prompt`` with the raw
    encoder states at ``<<REL>>`` as prompts: as for the entity head, the mean pair
    representation (over the pairs seen on ``texts``) is subtracted from the bias of
    ``pair_rep_layer``'s last ``nn.Linear``, then that layer is scaled so the logits have
    standard deviation ``logit_std``. Checkpoints scored by a triples layer are left as
    they are. Call after :func:`calibrate_head` (entity selection feeds the pairs).
    """
    import torch

    core = model.model
    if not hasattr(core, "pair_rep_layer"):
        return
    last = _last_linear(core.pair_rep_layer)
    # Few short texts and a high entity threshold: gliner scores every selected pair.
    texts = [t for t in _calibration_texts() if len(t) < 120][:6] if texts is None else list(texts)
    relations = ["works for", "located in", "born in", "founded", "part of"]

    def capture(threshold: float) -> tuple[Any, Any]:
        reps, logits = [], []
        hooks = [
            core.pair_rep_layer.register_forward_hook(lambda _m, _a, out: reps.append(out)),
            core.register_forward_hook(lambda _m, _a, out: logits.append(out)),
        ]
        try:
            with torch.no_grad():
                labels = ["person", "location", "organization"]
                # adjacency 0: every pair (attention-style adjacencies are ~1/E each)
                model.inference(
                    texts, labels, relations=relations, threshold=threshold, adjacency_threshold=0.0
                )
        finally:
            for hook in hooks:
                hook.remove()
        valid_reps = torch.cat([r[o.rel_mask.bool()] for r, o in zip(reps, logits)])
        valid_logits = torch.cat([o.rel_logits[o.rel_mask.bool()].flatten() for o in logits])
        return valid_reps.double().mean(0), valid_logits.double()

    was_training = core.training
    model.eval()
    try:
        # The highest entity threshold that still gives enough pairs (token models need
        # start, end and inside above it).
        for threshold in (0.9, 0.8, 0.7, 0.6, 0.5, 0.3):
            mean_rep, logits = capture(threshold)
            if logits.numel() >= 200:
                break
        with torch.no_grad():
            last.bias.sub_(mean_rep.to(last.bias.dtype))
        _, logits = capture(threshold)
        std = float(logits.std()) if logits.numel() > 1 else 0.0
        if not std > 0:
            raise ValueError("no pair of entities to calibrate the relation logits on")
        with torch.no_grad():
            last.weight.mul_(logit_std / std)
            last.bias.mul_(logit_std / std)
    finally:
        core.train(was_training)


def build_gliner(
    backbone_dir: str | Path,
    *,
    labels_encoder_dir: str | Path | None = None,
    span_mode: str = "markerV0",
    max_width: int = 12,
    hidden_size: int | None = None,
    max_len: int = 384,
    seed: int = 0,
    logit_scale: float = 1.0,
    **config_overrides: Any,
) -> gliner.GLiNER:
    """A random-init GLiNER (torch, eval mode) on local backbone directories, offline.

    The recipe (gliner 0.2.29, transformers 5.x):

    * ``GLiNERConfig(model_name=<abs backbone dir>, labels_encoder=<abs dir or None>,
      span_mode=..., max_width=..., hidden_size=..., max_len=...)``; the architecture
      follows from ``span_mode`` (``"token_level"`` = token model) and ``labels_encoder``
      (set = bi-encoder). ``hidden_size`` defaults to the backbone width; a different
      value makes gliner add a ``projection`` Linear after the encoder (and a
      ``labels_projection`` after a labels encoder of another width).
    * ``GLiNER.from_config(config, backbone_from_pretrained=True, load_tokenizer=True,
      local_files_only=True)``: loads the backbone weights from the directory and its
      tokenizer with ``AutoTokenizer``; uni-encoders get ``[FLERT]``, ``<<ENT>>`` and
      ``<<SEP>>`` added as special tokens and their embeddings resized (``class_token_index``
      and ``vocab_size`` are set in the config); bi-encoders keep the backbone
      vocabulary (gliner only warns that resizing is not supported).
    * The GLiNER heads are initialised from ``torch.manual_seed(seed)`` (inside
      ``fork_rng``, the caller's RNG is untouched).
    * ``logit_scale == 1.0`` leaves gliner's own initialisation, whose scores all sit
      near 0.5. Any other value calls :func:`calibrate_head`: the head's last Linear
      layers are centred and rescaled on built-in sentences so that the logits are about
      ``N(0, logit_scale**2)`` there; :data:`DEFAULT_LOGIT_SCALE` (2.0) puts about a
      third of the scores in each of (0, 0.3), (0.3, 0.7) and (0.7, 1). (Multiplying the
      weights alone cannot do this: the raw logits are not centred on 0.)

    ``model.save_pretrained(d)`` then ``GLiNER.from_pretrained(d, load_tokenizer=True,
    local_files_only=True)`` reloads it without the backbone directories: the encoder
    configs travel inside ``gliner_config.json`` and the tokenizers are saved in ``d``
    (``d/labels_tokenizer`` for the bi-encoder's). ``config_overrides`` go to
    ``GLiNERConfig`` (e.g. ``dropout``, ``num_rnn_layers``, ``subtoken_pooling``,
    ``post_fusion_schema``).
    """
    import torch
    from gliner import GLiNER, GLiNERConfig
    from transformers import AutoConfig

    if logit_scale != 1.0 and not 0 < logit_scale <= _MAX_LOGIT_SCALE:
        raise ValueError(
            f"logit_scale={logit_scale}: it is the standard deviation of the calibrated logits, "
            f"not a multiplier of the raw ones; use (0, {_MAX_LOGIT_SCALE:g}] "
            f"(DEFAULT_LOGIT_SCALE={DEFAULT_LOGIT_SCALE:g}), larger values saturate every score to 0 or 1"
        )
    backbone = Path(backbone_dir).resolve()
    if hidden_size is None:
        hidden_size = AutoConfig.from_pretrained(backbone, local_files_only=True).hidden_size
    fields: dict[str, Any] = {
        "model_name": str(backbone),
        "labels_encoder": None if labels_encoder_dir is None else str(Path(labels_encoder_dir).resolve()),
        "span_mode": span_mode,
        "max_width": max_width,
        "hidden_size": hidden_size,
        "max_len": max_len,
    }
    fields.update(config_overrides)
    config = GLiNERConfig(**fields)
    with torch.random.fork_rng(devices=[]), _no_progress_bars():
        torch.manual_seed(seed)
        model = GLiNER.from_config(
            config,
            backbone_from_pretrained=True,
            load_tokenizer=True,
            local_files_only=True,
        )
        model.eval()
        if logit_scale != 1.0:
            # Decoder models: calibrate the span head without generating labels (gliner's
            # generation fails on a batch with no span above the threshold).
            labels_decoder = getattr(model.config, "labels_decoder", None)
            model.config.labels_decoder = None
            try:
                calibrate_head(model, logit_scale)  # inference's DataLoader draws from the RNG
                if getattr(model.config, "represent_spans", False):
                    calibrate_span_logits(model, logit_scale)
            finally:
                model.config.labels_decoder = labels_decoder
            if getattr(config, "relations_layer", None) is not None:
                calibrate_relations(model, logit_scale)
    return model


# ---------------------------------------------------------------------------------------
# GPT-2 (the generative label decoder)
# ---------------------------------------------------------------------------------------
GPT2_EOS = "<|endoftext|>"


def _byte_level_bpe(vocab_size: int):
    """A GPT-2-style byte-level BPE `tokenizers.Tokenizer` trained on :data:`CORPUS`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[GPT2_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    return tok


def make_tiny_gpt2(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 600,
    seed: int = 0,
    n_positions: int = 1024,
    logit_std: float = 4.0,
    model_vocab_size: int | None = None,
) -> Path:
    """Write a tiny random GPT-2 (``GPT2LMHeadModel`` + byte-level BPE tokenizer) to ``out_dir``.

    The tokenizer is trained with ``tokenizers`` on :data:`CORPUS` (``<|endoftext|>`` is
    bos, eos and unk, like GPT-2's) and saved as a (fast) ``GPT2Tokenizer`` directory. The
    LM head is untied from the input embeddings and scaled so that the logits spread
    (standard deviation about ``logit_std``): greedy choices of a random model are then
    far from ties, which float rounding could otherwise flip. ``model_vocab_size`` (at least
    the tokenizer's) pads the model's vocabulary, e.g. to GPT-2's 50257 for timing work.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backend = _byte_level_bpe(vocab_size)
    tokenizer = GPT2Tokenizer(  # transformers 5: the fast (tokenizers) one
        tokenizer_object=backend,
        bos_token=GPT2_EOS,
        eos_token=GPT2_EOS,
        unk_token=GPT2_EOS,
        model_max_length=n_positions,
    )
    eos_id = backend.token_to_id(GPT2_EOS)
    if model_vocab_size is not None and model_vocab_size < backend.get_vocab_size():
        raise ValueError(f"model_vocab_size must be at least the tokenizer's {backend.get_vocab_size()}")
    config = GPT2Config(
        vocab_size=model_vocab_size or backend.get_vocab_size(),
        n_positions=n_positions,
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=num_heads,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config).eval()
        with torch.no_grad():
            head = model.lm_head.weight
            # logits = h . w with h ~ LayerNorm output (unit variance per coordinate)
            head.copy_(torch.randn_like(head) * (logit_std / math.sqrt(hidden_size)))
    with _no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
