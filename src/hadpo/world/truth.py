"""Ground truth for sentences in the world's own description language.

The world knows the templates its descriptions are written in (`hadpo.world.data`), so a sentence a model
learned from them can be read exactly: an opening sentence makes no checkable claim ("cannot_judge"); an object
sentence is "correct" when an object of that category, colour and size stands at that position, else
"hallucination". Sentences outside the grammar get None (no ground truth). Judges are measured against this
(`pairs` config `ground_truth: hadpo.world.truth:sentence_label`).
"""

from __future__ import annotations

import re

from hadpo.records import ImageRecord
from hadpo.world.data import OBJECT_TEMPLATES, OPENINGS

_FIELDS = {"size": r"(?P<size>\w+)", "colour": r"(?P<colour>\w+)", "name": r"(?P<name>\w+)",
           "position": r"(?P<position>[a-z ]+?)"}  # fmt: skip


def _pattern(template: str) -> re.Pattern:
    body = re.escape(template.rstrip("."))
    for field, group in _FIELDS.items():
        body = body.replace(re.escape("{" + field + "}"), group)
    return re.compile(f"^{body}\\.?$", re.IGNORECASE)


PATTERNS = [_pattern(t) for t in OBJECT_TEMPLATES]
OPENING_SENTENCES = {o.rstrip(".").lower() for o in OPENINGS}


def sentence_label(image: ImageRecord, sentence: str) -> str | None:
    text = " ".join(sentence.split()).rstrip(".")
    if text.lower() in OPENING_SENTENCES:
        return "cannot_judge"
    for pattern in PATTERNS:
        match = pattern.match(text)
        if match:
            claim = {k: v.lower() for k, v in match.groupdict().items()}
            found = any(
                o.name == claim["name"] and o.attributes[:2] == [claim["colour"], claim["size"]]
                and o.position == claim["position"]
                for o in image.objects
            )
            return "correct" if found else "hallucination"
    return None
