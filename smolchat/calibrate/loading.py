"""Loading a model pair that reads images the way measured fastest on this computer."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from smolchat.calibrate import tuning
from smolchat.engine.engine import Engine, gpu_plan
from smolchat.engine.gguf_info import ProjectorInfo, TextModelInfo, check_pair, inspect_projector, inspect_text_model
from smolchat.engine.types import EngineSettings, VisionEncoderError
from smolchat.engine.vision.plan import LLAMA_CPP, VisionPlan

log = logging.getLogger(__name__)


def open_engine(
    model_path: str | os.PathLike[str],
    mmproj_path: str | os.PathLike[str] | None = None,
    settings: EngineSettings = EngineSettings(),
    *,
    fits: Callable[[TextModelInfo, ProjectorInfo, VisionPlan], str | None] | None = None,
) -> Engine:
    """An Engine for the pair, with the vision plan measured fastest here.

    What the settings fix (vision_backend, vision_precision, n_threads_vision, n_threads) is
    kept; the rest is the fastest measured variant that agrees with it (the first time, this
    measures the computer: about 15 s). A GPU build reads images on the GPU, unmeasured.
    Where OpenVINO or ONNX Runtime was chosen but does not load here, libmtmd reads the
    images instead. ``fits`` weighs memory (``budget.fit.vision_memory_rule``): an encoder
    that it says does not fit beside the model is passed over for the next fastest.
    """
    if mmproj_path is None:
        return Engine(model_path, None, settings)
    # the files are checked first, as the engine checks them, so that a damaged one is named
    # before anything is measured
    text = inspect_text_model(model_path)
    projector = inspect_projector(mmproj_path)
    check_pair(text, projector)
    s = settings
    check = (lambda plan: fits(text, projector, plan)) if fits else None
    plan = gpu_plan(s) or tuning.plan(
        backend=s.vision_backend,
        precision=s.vision_precision,
        threads=s.n_threads_vision,
        decode_threads=s.n_threads,
        fits=check,
    )
    try:
        return Engine(
            model_path, mmproj_path, s, plan=plan, first_tile_s=tuning.probe_seconds_per_tile(plan, projector.n_layer)
        )
    except VisionEncoderError as e:
        log.warning("reading images with llama.cpp instead of %s: %s", plan.backend, e.__cause__ or e)
        precision = "auto" if s.vision_precision not in ("exact", "Q8_0", "F16", "BF16") else s.vision_precision
        plan = tuning.plan(
            backend=LLAMA_CPP, precision=precision, threads=s.n_threads_vision, decode_threads=s.n_threads
        )
        return Engine(
            model_path, mmproj_path, s, plan=plan, first_tile_s=tuning.probe_seconds_per_tile(plan, projector.n_layer)
        )
