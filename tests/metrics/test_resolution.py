"""``size_error`` / ``size_mod8``: the delivered size against the size the record implies.

The expected size is the metadata's *output* size (hires fix and upscales included), never the
base generation size: a hires-fixed 1024x1024 image made from a 512x512 first pass is exact.
"""

from __future__ import annotations

import pytest

from sdeval.core.errors import UsageError
from sdeval.inputs.metadata.a1111 import parse_a1111
from sdeval.inputs.metadata.comfyui import walk_graph
from sdeval.inputs.metadata.fooocus import parse_fooocus_json
from sdeval.inputs.metadata.invokeai import parse_invokeai_metadata
from sdeval.inputs.metadata.novelai import parse_novelai
from sdeval.inputs.metadata.types import GenerationMetadata
from sdeval.inputs.record import ImageRecord
from sdeval.metrics.base import FeatureBatch, Missing
from sdeval.metrics.resolution import SizeError, SizeMod8, parse_size

HIRES_A1111 = ("a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
               "Denoising strength: 0.5, Hires upscale: 2, Hires upscaler: Latent")


def _record(width: int | None, height: int | None,
            meta: GenerationMetadata | None = None) -> ImageRecord:
    return ImageRecord(path="x.png", width=width, height=height,
                       metadata=meta or GenerationMetadata())


def _scores(metric, *records: ImageRecord) -> list:
    return metric.compute(FeatureBatch(records=list(records), features={}))


def _node(class_type: str, **inputs: object) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def _comfy_hires() -> GenerationMetadata:
    graph = {
        "4": _node("CheckpointLoaderSimple", ckpt_name="sd15.safetensors"),
        "5": _node("EmptyLatentImage", width=512, height=512, batch_size=1),
        "6": _node("CLIPTextEncode", text="a fox", clip=["4", 1]),
        "7": _node("CLIPTextEncode", text="blurry", clip=["4", 1]),
        "3": _node("KSampler", seed=1, steps=20, cfg=7.0, sampler_name="euler",
                   scheduler="normal", denoise=1.0, model=["4", 0], positive=["6", 0],
                   negative=["7", 0], latent_image=["5", 0]),
        "10": _node("LatentUpscaleBy", samples=["3", 0], upscale_method="nearest-exact",
                    scale_by=2.0),
        "11": _node("KSampler", seed=1, steps=10, cfg=7.0, sampler_name="euler",
                    scheduler="normal", denoise=0.5, model=["4", 0], positive=["6", 0],
                    negative=["7", 0], latent_image=["10", 0]),
        "8": _node("VAEDecode", samples=["11", 0], vae=["4", 2]),
        "9": _node("SaveImage", images=["8", 0], filename_prefix="ComfyUI"),
    }
    return walk_graph(graph)


@pytest.mark.parametrize("meta", [parse_a1111(HIRES_A1111), _comfy_hires()],
                         ids=["a1111", "comfyui"])
def test_hires_record_matches_its_upscaled_output(meta: GenerationMetadata) -> None:
    assert (meta.width, meta.height) == (512, 512)  # the base size is what was asked first
    assert (meta.output_width, meta.output_height) == (1024, 1024)
    exact, wrong = _scores(SizeError(), _record(1024, 1024, meta), _record(1024, 1000, meta))
    assert exact == 0.0  # no false positive for a hires-fixed image
    assert wrong == 24.0
    base_sized = _scores(SizeError(), _record(512, 512, meta))[0]
    assert base_sized == 512.0  # a hires record whose file is first-pass sized is a mismatch


def test_single_pass_mismatch_is_the_largest_side_difference() -> None:
    meta = parse_a1111("a cat\nSteps: 20, Sampler: Euler a, Seed: 3, Size: 512x512")
    assert _scores(SizeError(), _record(512, 768, meta)) == [256.0]
    assert _scores(SizeError(), _record(510, 512, meta)) == [2.0]


def test_resolution_option_wins_over_metadata() -> None:
    meta = parse_a1111(HIRES_A1111)
    metric = SizeError({"resolution": "768x768"})
    assert metric.expected == (768, 768)
    assert _scores(metric, _record(1024, 1024, meta), _record(768, 768)) == [256.0, 0.0]


def test_unknown_expected_size_is_missing() -> None:
    # base size known but output size not (e.g. a model upscaler): no fallback to the base size
    meta = GenerationMetadata(source="comfyui", width=512, height=512)
    [score] = _scores(SizeError(), _record(2048, 2048, meta))
    assert isinstance(score, Missing) and "no requested size" in score.reason
    [none] = _scores(SizeError(), _record(512, 512))
    assert isinstance(none, Missing)
    [unread] = _scores(SizeError(), _record(None, None, parse_a1111(HIRES_A1111)))
    assert isinstance(unread, Missing) and unread.reason == "image size unknown"


def test_manifest_width_height_state_the_output_size() -> None:
    embedded = parse_a1111(HIRES_A1111)
    manifest = GenerationMetadata(source="manifest", width=800, height=600)
    merged = embedded.merged(manifest)
    assert (merged.width, merged.height) == (800, 600)
    assert (merged.output_width, merged.output_height) == (800, 600)
    assert _scores(SizeError(), _record(800, 600, merged)) == [0.0]
    # a manifest without a size leaves the embedded output size alone
    kept = embedded.merged(GenerationMetadata(source="manifest", prompt="x"))
    assert (kept.output_width, kept.output_height) == (1024, 1024)
    # alone (nothing embedded), the manifest's size is the expected size too
    alone = GenerationMetadata().merged(manifest)
    assert (alone.output_width, alone.output_height) == (800, 600)


def test_other_readers_state_the_output_size() -> None:
    """InvokeAI (hires fix or not: width/height are the final size), Fooocus, NovelAI."""
    invoke = parse_invokeai_metadata({"positive_prompt": "a fox", "width": 1024, "height": 768,
                                      "hrf_enabled": True, "hrf_method": "ESRGAN"})
    fooocus = parse_fooocus_json({"Prompt": "a fox", "Resolution": "(1152, 896)", "Seed": "7"})
    novelai = parse_novelai({"Software": "NovelAI", "Description": "a fox",
                             "Comment": '{"width": 832, "height": 1216, "seed": 4}'})
    for meta, size in ((invoke, (1024, 768)), (fooocus, (1152, 896)), (novelai, (832, 1216))):
        assert (meta.output_width, meta.output_height) == size
        assert _scores(SizeError(), _record(*size, meta)) == [0.0]


def test_size_mod8() -> None:
    scores = _scores(SizeMod8(), _record(1024, 1024), _record(500, 512), _record(512, 1023),
                     _record(None, None))
    assert scores[:3] == [0.0, 4.0, 7.0]
    assert isinstance(scores[3], Missing)


def test_size_mod8_skips_images_resized_in_pixel_space_after_decoding() -> None:
    graph = {
        "1": _node("CheckpointLoaderSimple", ckpt_name="m.safetensors"),
        "5": _node("EmptyLatentImage", width=512, height=512, batch_size=1),
        "3": _node("KSampler", seed=1, steps=20, cfg=7, sampler_name="euler", scheduler="normal",
                   denoise=1, model=["1", 0], positive=["6", 0], negative=["6", 0],
                   latent_image=["5", 0]),
        "6": _node("CLIPTextEncode", text="x", clip=["1", 1]),
        "8": _node("VAEDecode", samples=["3", 0], vae=["1", 2]),
        "62": _node("UpscaleModelLoader", model_name="4x.pth"),
        "63": _node("ImageUpscaleWithModel", upscale_model=["62", 0], image=["8", 0]),
        "64": _node("ImageScale", upscale_method="lanczos", width=1000, height=1002,
                    crop="disabled", image=["63", 0]),
        "9": _node("SaveImage", filename_prefix="x", images=["64", 0]),
    }
    meta = walk_graph(graph)
    [mod8] = _scores(SizeMod8(), _record(1000, 1002, meta))
    assert isinstance(mod8, Missing) and "pixel space" in mod8.reason
    assert _scores(SizeError(), _record(1000, 1002, meta)) == [0.0]
    assert _scores(SizeError(), _record(1024, 1024, meta)) == [24.0]


def test_parse_size() -> None:
    assert parse_size("1024x768") == (1024, 768)
    assert parse_size(" 512 × 512 ") == (512, 512)
    with pytest.raises(UsageError):
        parse_size("big")
    with pytest.raises(UsageError):
        SizeError({"resolution": "1024"})


def test_absurd_sizes_from_metadata_are_missing_not_an_overflow():
    from sdeval.inputs.metadata.types import GenerationMetadata
    from sdeval.inputs.record import ImageRecord
    from sdeval.metrics.base import FeatureBatch, Missing
    from sdeval.metrics.resolution import SizeError

    huge = int("1" + "0" * 400)
    rec = ImageRecord(path="x.png", width=512, height=512,
                      metadata=GenerationMetadata(output_width=huge, output_height=512))
    (v,) = SizeError().compute(FeatureBatch(records=[rec], features={}))
    assert isinstance(v, Missing) and "out of range" in v.reason


def test_absurd_resolution_flag_is_a_usage_error():
    import pytest

    from sdeval.core.errors import UsageError
    from sdeval.metrics.resolution import parse_size

    for bad in ("1" + "0" * 400 + "x512", "0x512", "99999999x1"):
        with pytest.raises(UsageError):
            parse_size(bad)
