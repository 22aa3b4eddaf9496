"""The suite's inputs: label lists, the agreement corpus, case sizes (bench_suite.py)."""

from __future__ import annotations

from bench_common import LABELS, TEXT

LABEL_COUNTS = (5, 20, 50, 100, 200)
QUICK_LABEL_COUNTS = (5, 200)
LONG_WORDS = (400, 2000)
THROUGHPUT_TEXTS, THROUGHPUT_BATCH = 32, 8
THRESHOLD = 0.5
NOISY_SHARE = 0.1  # other processes' share of the CPUs above which a timed case counts as noisy

# Plausible entity type names for label scaling; the first five are LABELS.
# fmt: off
ENTITY_TYPES = [
    *LABELS,
    "country", "city", "state", "continent", "river", "mountain", "lake", "ocean", "island", "region",
    "company", "university", "school", "hospital", "government agency", "political party", "sports team",
    "band", "newspaper", "television channel", "museum", "airport", "bridge", "building", "stadium",
    "road", "railway station", "park", "planet", "star", "galaxy", "time", "duration", "money",
    "percentage", "quantity", "ordinal number", "cardinal number", "age", "temperature", "distance",
    "weight", "phone number", "email address", "url", "ip address", "postal code", "street address",
    "credit card number", "social security number", "passport number", "license plate", "bank account",
    "date of birth", "nationality", "religion", "language", "ethnic group", "job title", "title",
    "award", "prize", "law", "treaty", "court case", "court", "judge", "lawyer", "statute", "regulation",
    "contract", "patent", "trademark", "disease", "symptom", "drug", "medication", "dosage", "gene",
    "protein", "chemical", "cell type", "cell line", "anatomy", "organism", "species", "virus",
    "bacterium", "medical procedure", "medical device", "clinical trial", "lab test", "vaccine",
    "product", "software", "programming language", "operating system", "file format", "algorithm",
    "data set", "library", "framework", "api", "function name", "variable name", "version number",
    "hardware", "vehicle", "car model", "aircraft", "ship", "weapon", "food", "dish", "beverage",
    "ingredient", "plant", "animal", "color", "material", "book", "film", "song", "album",
    "television show", "video game", "painting", "artwork", "character", "fictional place", "author",
    "artist", "musician", "actor", "athlete", "politician", "scientist", "journalist", "doctor",
    "patient", "teacher", "student", "ceo", "founder", "investor", "stock ticker", "currency",
    "financial instrument", "index", "market", "industry", "brand", "conference", "festival",
    "holiday", "war", "battle", "election", "sport", "competition", "tournament", "match", "league",
    "season", "position", "department", "committee", "agency", "military unit", "police force",
    "crime", "charge", "sentence", "prison", "address", "neighborhood", "district", "county",
    "province", "facility", "landmark", "monument", "historical period", "dynasty", "empire",
    "philosophy", "theory", "field of study", "academic degree", "course", "exam", "journal",
    "publication", "citation", "website", "social media handle", "hashtag", "username", "password",
    "device", "component", "unit of measure", "frequency", "measurement", "weather event",
]
# fmt: on

# ~40 varied texts for the agreement check (threshold 0.5; an entity matches on start, end, label).
CORPUS = [
    # news
    TEXT,
    "Tesla shares fell 4.2% on Tuesday after Elon Musk said the Cybertruck would be delayed to 2025.",
    "The United Nations Security Council met in New York on Friday to discuss the crisis in Sudan.",
    "Lionel Messi scored twice as Inter Miami beat Orlando City 3-1 at DRV PNK Stadium on Saturday night.",
    "Prime Minister Rishi Sunak announced a general election for 4 July, ending months of speculation.",
    "Heavy rain caused flooding in Valencia, Spain, where more than 200 people died in October 2024.",
    "Microsoft agreed to buy Activision Blizzard for $68.7 billion, the largest deal in gaming history.",
    "NASA's Artemis II mission will send four astronauts around the Moon, including Christina Koch.",
    # biomedical
    "Patients with type 2 diabetes received 500 mg metformin twice daily for 12 weeks at Mayo Clinic.",
    "Mutations in BRCA1 and BRCA2 increase the risk of breast and ovarian cancer in carriers.",
    "The SARS-CoV-2 spike protein binds ACE2 receptors on epithelial cells of the respiratory tract.",
    "Aspirin 81 mg reduced the incidence of myocardial infarction but raised gastrointestinal bleeding.",
    "HeLa cells were treated with 10 µM cisplatin and apoptosis was measured by annexin V staining.",
    "In the phase III KEYNOTE-189 trial, pembrolizumab plus chemotherapy improved overall survival.",
    # legal
    "Pursuant to Article 6(1)(f) of Regulation (EU) 2016/679, the controller may process personal data.",
    "In Brown v. Board of Education, 347 U.S. 483 (1954), the Supreme Court ended school segregation.",
    "The Licensee shall pay Acme Holdings Ltd. a royalty of 3% of Net Sales within thirty (30) days.",
    "Judge Amy Berman Jackson sentenced the defendant to 87 months in federal prison on 14 March 2019.",
    "This Agreement is governed by the laws of the State of Delaware, without regard to conflict rules.",
    # code-ish
    "Call numpy.linalg.svd(A, full_matrices=False) and pass the result to scipy.sparse.csr_matrix.",
    "Run `pip install torch==2.3.1` then export CUDA_VISIBLE_DEVICES=0 before launching train.py.",
    "The function parse_config() in src/utils/io.py raises KeyError when 'model_name' is missing.",
    "Kubernetes 1.29 deprecated the flowcontrol.apiserver.k8s.io/v1beta2 API on AWS EKS clusters.",
    "ERROR 2024-05-01T12:03:44Z user_id=48213 ip=192.168.1.17 GET /api/v2/orders 500 (1532 ms)",
    # multilingual
    "Angela Merkel a rencontré Emmanuel Macron à Paris le 3 mars 2021 pour parler de l'Europe.",
    "Der Bundestag in Berlin hat am Donnerstag das Gesetz zur Cannabis-Legalisierung beschlossen.",
    "El presidente Pedro Sánchez viajó a Bruselas para reunirse con Ursula von der Leyen.",
    "東京証券取引所でトヨタ自動車の株価が3%上昇した。",
    "Президент Владимир Путин встретился с Си Цзиньпином в Москве в марте 2023 года.",
    "北京大学的研究人员在《自然》杂志上发表了关于量子计算的论文。",
    "Il Milan ha battuto la Juventus 2-0 a San Siro davanti a 75.000 tifosi.",
    # very short
    "Paris.",
    "Barack Obama",
    "Call me at 9.",
    "IBM vs. Oracle",
    "x",
    # numbers
    "Revenue rose from $1.2 billion in Q3 2022 to $1.45 billion in Q3 2023, up 20.8% year over year.",
    "The train leaves platform 9 at 14:35 and arrives in Manchester at 16:52, 2 h 17 min later.",
    "Order #A-10293 of 3 items (SKU 55-1200-07) shipped on 2023-11-02 to 221B Baker Street, London.",
    "The 2010 census counted 308,745,538 residents; California had 37,253,956 of them.",
]
AGREEMENT_LABELS = ["person", "organization", "location", "date", "money", "disease", "chemical", "law"]


def long_text(words: int) -> str:
    """About `words` words of varied prose, cycling through the corpus."""
    pool = [t for t in CORPUS if len(t.split()) > 8]
    out: list[str] = []
    i = 0
    while len(out) < words:
        out.extend(pool[i % len(pool)].split())
        i += 1
    return " ".join(out[:words])
