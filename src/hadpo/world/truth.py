"""Ground truth for sentences in the world's own description language.

The world knows the templates its texts are written in (`hadpo.world.data`), so a sentence a model learned from
them can be read exactly: an opening sentence makes no checkable claim ("cannot_judge"); a description's object
sentence is "correct" when an object of that category, colour and size stands at that position; a brief
caption ("There is a red star, a red moon and a blue sun.") is "correct" when every object it lists is there in
that colour. Anything else they claim is a "hallucination"; sentences outside the grammar get None (no ground
truth). Judges are measured against this (`pairs` config `ground_truth: hadpo.world.truth:sentence_label`).
"""

from __future__ import annotations

import re
from collections import Counter

from hadpo.records import ImageRecord
from hadpo.world.data import OBJECT_TEMPLATES, OPENINGS

_FIELDS = {
    "size": r"(?P<size>\w+)",
    "colour": r"(?P<colour>\w+)",
    "name": r"(?P<name>\w+)",
    "position": r"(?P<position>[a-z ]+?)",
}


def _pattern(template: str) -> re.Pattern:
    body = re.escape(template.rstrip("."))
    for field, group in _FIELDS.items():
        body = body.replace(re.escape("{" + field + "}"), group)
    return re.compile(f"^{body}\\.?$", re.IGNORECASE)


PATTERNS = [_pattern(t) for t in OBJECT_TEMPLATES]
OPENING_SENTENCES = {o.rstrip(".").lower() for o in OPENINGS}
_LISTED = r"an? \w+ \w+"  # "a red star": one object of a brief caption (data.brief_caption)
BRIEF_CAPTION = re.compile(rf"^there is {_LISTED}(?:, {_LISTED})*(?: and {_LISTED})?$", re.IGNORECASE)


def sentence_label(image: ImageRecord, sentence: str) -> str | None:
    text = " ".join(sentence.split()).rstrip(".")
    if text.lower() in OPENING_SENTENCES:
        return "cannot_judge"
    for pattern in PATTERNS:
        match = pattern.match(text)
        if match:
            claim = {k: v.lower() for k, v in match.groupdict().items()}
            found = any(
                o.name == claim["name"]
                and o.attributes[:2] == [claim["colour"], claim["size"]]
                and o.position == claim["position"]
                for o in image.objects
            )
            return "correct" if found else "hallucination"
    if BRIEF_CAPTION.match(text):
        body = text[len("there is ") :]
        listed = Counter(tuple(part.lower().split()[1:]) for part in re.split(r", | and ", body))  # (colour, name)
        there = Counter((o.attributes[0], o.name) for o in image.objects)
        return "correct" if all(there[item] >= count for item, count in listed.items()) else "hallucination"
    return None
