"""What every command shares: the run flags (how to run, not what to judge) and stderr messages."""

from __future__ import annotations

import sys
from typing import Any

import click



def err(msg: str) -> None:
    """A line on stderr (stdout stays clean for --json)."""
    click.echo(msg, err=True)


def is_main_rank() -> bool:
    """False on the other ranks of a torchrun job, which compute but do not print."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


def run_options(fn: Any) -> Any:
    """Options shared by commands that evaluate images (how to run, not what to judge)."""
    decorators = [
        click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True,
                     help="Images per model forward."),
        click.option("--workers", type=click.IntRange(1), help="Decode threads (default: CPU count, at most 8)."),
        click.option("--max-pixels", type=click.IntRange(1),
                     help="Decompression-bomb limit in pixels (default 8192x8192)."),
        click.option("--max-file-bytes", type=click.IntRange(1),
                     help="Largest input file read, in bytes (default 1 GiB); a larger one is an error row."),
        click.option("--device", metavar="DEVICE", help="Torch device for models: cuda, cuda:1, mps, cpu "
                                                        "(default: the best available)."),
        click.option("--clip-model", metavar="NAME", help="open_clip architecture (default ViT-L-14)."),
        click.option("--clip-pretrained", metavar="TAG|PATH",
                     help="open_clip pretrained tag, a local .pt/.safetensors file, or local-dir:DIR "
                          "(default openai)."),
        click.option("--model-path", "model_paths", multiple=True, metavar="ID=PATH",
                     help="Use a local file for a model id (repeatable; see 'sdeval models list')."),
        click.option("--offline", is_flag=True, default=None,
                     help="Never touch the network; a missing model is exit 2 (also SDEVAL_OFFLINE=1)."),
        click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache."),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


RUN_OPTION_NAMES = ("batch_size", "workers", "max_pixels", "max_file_bytes", "device", "clip_model", "clip_pretrained",
                    "model_paths", "offline", "no_cache")


def build_run_options(batch_size: int, workers: int | None, max_pixels: int | None, max_file_bytes: int | None,
                      device: str | None,
                      clip_model: str | None, clip_pretrained: str | None, model_paths: tuple[str, ...],
                      offline: bool | None, no_cache: bool) -> Any:
    """RunOptions from the shared flags (offline mode is set before any model library is imported)."""
    from sdeval.inputs.decode import DecodeOptions
    from sdeval.models.registry import parse_model_paths
    from sdeval.pipeline.run import RunOptions

    metric_options: dict[str, Any] = {}
    if offline:
        from sdeval.models import set_offline

        set_offline(True)
        metric_options["offline"] = True
    for key, value in (("device", device), ("clip_model", clip_model), ("clip_pretrained", clip_pretrained)):
        if value:
            metric_options[key] = value
    paths = parse_model_paths(model_paths)
    if paths:
        metric_options["model_paths"] = paths
    kwargs: dict[str, Any] = {"batch_size": batch_size, "metric_options": metric_options, "cache": not no_cache}
    if max_pixels or max_file_bytes:
        decode = DecodeOptions()
        kwargs["decode"] = DecodeOptions(max_pixels=max_pixels or decode.max_pixels,
                                         max_file_bytes=max_file_bytes or decode.max_file_bytes)
    if workers:
        kwargs["workers"] = workers
    return RunOptions(**kwargs)


def set_options(fn: Any) -> Any:
    """Options of the set-level metrics, shared by ``eval`` and ``stats build``."""
    decorators = [
        click.option("--mode", "fid_mode", type=click.Choice(["clean", "legacy_tensorflow"]), default="clean",
                     show_default=True, help="Inception preprocessing: clean-fid's 'clean' resize, or "
                                             "'legacy_tensorflow' to compare with published FIDs."),
        click.option("--exact-inception", "inception_optimize", flag_value=False, default=None,
                     help="Run the Inception file exactly as clean-fid does (default on CPU: frozen and "
                          "optimised, ~1.3x faster, features within ~1e-5)."),
        click.option("--kid-subsets", type=click.IntRange(1), help="KID subsets (default 100)."),
        click.option("--kid-subset-size", type=click.IntRange(2), help="KID subset size (default 1000; capped at N)."),
        click.option("--cmmd-clip-model", metavar="NAME",
                     help="open_clip model for CMMD/CLIP-FID (default ViT-L-14-336)."),
        click.option("--cmmd-clip-pretrained", metavar="TAG|PATH",
                     help="Its weights: tag, file or local-dir:DIR (default openai)."),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


def _metric_options(opts: Any, values: dict[str, Any]) -> Any:
    from dataclasses import replace

    mo = dict(opts.metric_options)
    for key, value in values.items():
        if value not in (None, ()):
            mo[key] = value
    return replace(opts, metric_options=mo)


def with_metric_options(opts: Any, values: dict[str, Any]) -> Any:
    from dataclasses import replace

    mo = dict(opts.metric_options)
    for key, value in values.items():
        if value not in (None, ()):
            mo[key] = value
    return replace(opts, metric_options=mo)
