"""The evaluation a chain runs on every round's model, from its `eval` section: POPE question files, other yes/no
question files (held-out types), and descriptions of an annotated image set scored with CHAIR (its recall is the
object coverage) and SHR. Each benchmark is `hadpo.evaluate.suite`'s, so answers and details stay on disk under
the round's eval/ folder and a killed evaluation resumes from its answer files.

Every model's summary is `hadpo.evaluate.suite.model_summary`'s (what the section leaves out is absent), the
shape of the scene world's suite too (`hadpo.world.suite.evaluate_model`), so rounds.md reads either.
"""

from __future__ import annotations

from pathlib import Path

from hadpo.evaluate.suite import model_summary, run_chair, run_pope, run_shr
from hadpo.inference import describe_images
from hadpo.judge.config import make_judge
from hadpo.pairs.config import PairsConfig
from hadpo.pairs.store import BuildFiles
from hadpo.records import ImageRecord, read_jsonl
from hadpo.rounds.config import RoundsEval


class SuiteEvaluator:
    """Calls as `evaluator(model_folder, out_folder) -> summary`. SHR's judge is the pairs recipe's unless the
    section names its own; an LLM judge caches its answers under `cache_root`."""

    def __init__(self, settings: RoundsEval, pairs: PairsConfig, cache_root: Path):
        self.settings, self.pairs, self.cache_root = settings, pairs, cache_root
        self.judge = None  # made on first use, over the described images' annotations

    def __call__(self, model: Path, out: Path) -> dict:
        settings, results = self.settings, {}
        answering = settings.decoding(mode=settings.answer_mode)
        if settings.pope:
            results["pope"] = run_pope(str(model), settings.pope, out, answering, settings.image_root, progress=False)
        if settings.heldout:
            results["heldout"] = run_pope(
                str(model), settings.heldout, out / "heldout", answering, settings.image_root, progress=False
            )
        if settings.images:
            descriptions = describe_images(
                str(model), settings.images, out / "descriptions.jsonl", settings.decoding(), settings.prompt, False
            )
            truth = settings.chair_annotations or settings.images
            results["chair"] = run_chair(descriptions, truth, out, model=str(model), protocol=settings.chair_protocol)
            if settings.shr:
                judge = self.shr_judge()
                results["shr"] = run_shr(descriptions, settings.images, judge, out, model=str(model), progress=False)
        return model_summary(**results)

    def shr_judge(self):
        if self.judge is None:
            config = self.settings.judge or self.pairs.judge
            records = read_jsonl(self.settings.images, ImageRecord)
            self.judge = make_judge(config, records, cache_dir=BuildFiles(self.cache_root).cache)
        return self.judge
