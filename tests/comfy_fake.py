"""An in-process fake ComfyUI server on 127.0.0.1 for tests.

It reproduces the contract recorded against a real ComfyUI 0.3.64 (``shared/comfyui``):

- every route with and without ``/api`` (``api_routes=False`` answers 404 under ``/api``, like servers
  from before mid-2024); the Origin/Host check (403) on every route and on the websocket handshake;
- ``POST /prompt`` validation like ``execution.validate_prompt`` (``no_prompt``, ``invalid_prompt``,
  ``prompt_no_outputs``, ``prompt_outputs_failed_validation`` with per-node errors; a graph with one valid
  and one invalid output is accepted with ``node_errors``; malformed JSON or a non-dict prompt is a 500 with
  a text body). ``error_shape="old"`` sends ``error`` as a plain string, as old servers do;
- one worker running prompts in order, with the recorded frame sequence: ``status`` (broadcast),
  ``execution_start``, ``execution_cached``, per node ``progress_state`` / ``executing`` / ``progress`` /
  ``executed``, ``execution_success`` (or ``execution_error`` / ``execution_interrupted``), ``status``,
  ``executing {node: null}``. Frames go to the socket whose clientId is the prompt's ``client_id`` (none
  without one); a second socket with the same clientId silences the first and gets ``status`` +
  ``executing {node}`` without a prompt_id;
- a node cache like ComfyUI's: an identical graph (``extra_pnginfo`` aside) is a full cache hit that reports
  the OLD file names and writes nothing; ``POST /free`` empties it; failed nodes are not cached;
- ``/history`` (``{}`` until done, forever for deleted prompts), ``/queue`` (+ delete/clear),
  ``/interrupt`` (global or by prompt_id), ``/view`` (404/400/403 like the real one), ``/system_stats``,
  ``/object_info``, ``/free``, ``/features``, ``/embeddings``, ``/extensions``, ``/ws``.

Knobs for tests: ``generator`` (``graph -> PNG bytes | list of PNG bytes``; SaveImage-style ``prompt`` /
``extra_pnginfo`` tEXt chunks are added unless the PNG already has a ``prompt`` chunk), ``node_hook``
(``(graph, node_id) -> None``, raise to make that node fail at run time), ``node_delay`` /
``http_delay`` (slow server), ``slow_answers`` (late answers to one route), ``fail_next(n, status)``
(5xx answers), ``ws_mode`` (``ok`` / ``refuse`` / ``silent``), ``drop_ws_on`` (close every socket when a
frame of that type is about to go out), ``drop_sockets()``. ``requests`` logs every HTTP request; ``files``
holds what was "saved".

Use ``with FakeComfyUI() as fake: ... fake.url``, or the ``comfy_fake`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import random
import string
import struct
import threading
import time
import urllib.parse
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiohttp import WSMsgType, web

U64_MAX = 2 ** 64 - 1
FILES = "<files>"  # a combo input listing model files: any string is accepted unless ``model_files`` is set

SAMPLERS = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
            "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
            "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
            "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde",
            "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep",
            "res_multistep_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp",
            "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver",
            "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
              "linear_quadratic", "kl_optimal"]

SYSTEM_STATS: dict[str, Any] = {
    "system": {"os": "posix", "ram_total": 25276514304, "ram_free": 24177913856, "comfyui_version": "0.3.64",
               "required_frontend_version": "1.27.10", "installed_templates_version": "0.1.95",
               "required_templates_version": "0.1.95",
               "python_version": "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]",
               "pytorch_version": "2.11.0+cu130", "embedded_python": False,
               "argv": ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", "8188", "--disable-auto-launch"]},
    "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 25276514304,
                 "vram_free": 24177913856, "torch_vram_total": 25276514304, "torch_vram_free": 24177913856}],
}
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}


def _int(default: int, lo: int, hi: int, **kw: Any) -> tuple:
    return ("INT", {"default": default, "min": lo, "max": hi, **kw})


def _float(default: float, lo: float, hi: float, **kw: Any) -> tuple:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, **kw})


SEED = _int(0, 0, U64_MAX, control_after_generate=True)


@dataclass(frozen=True)
class NodeSpec:
    """What ``/object_info`` says about a node class, and what validation checks."""

    required: dict[str, tuple]
    outputs: tuple[str, ...] = ()
    optional: dict[str, tuple] = field(default_factory=dict)
    output_node: bool = False
    category: str = "sdeval/fake"
    python_module: str = "nodes"
    hidden: dict[str, str] = field(default_factory=dict)


_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}

NODE_SPECS: dict[str, NodeSpec] = {
    # the test node pack used for the recordings
    "SeededNoiseImage": NodeSpec({"seed": SEED, "width": _int(64, 8, 4096, step=8),
                                  "height": _int(64, 8, 4096, step=8)}, ("IMAGE",),
                                 {"batch_size": _int(1, 1, 64), "text": ("STRING", {"default": "", "multiline": True})},
                                 python_module="custom_nodes.sdeval_test_nodes"),
    "FailIfSeedEven": NodeSpec({"image": ("IMAGE",), "seed": _int(0, 0, U64_MAX)}, ("IMAGE",),
                               python_module="custom_nodes.sdeval_test_nodes"),
    "SlowPassthrough": NodeSpec({"image": ("IMAGE",), "seconds": _float(2.0, 0.0, 600.0, step=0.1)}, ("IMAGE",),
                                {"steps": _int(10, 1, 1000)}, python_module="custom_nodes.sdeval_test_nodes"),
    "ImageStats": NodeSpec({"image": ("IMAGE",)}, ("STRING",), output_node=True,
                           python_module="custom_nodes.sdeval_test_nodes"),
    # core image nodes
    "SaveImage": NodeSpec({"images": ("IMAGE", {"tooltip": "The images to save."}),
                           "filename_prefix": ("STRING", {"default": "ComfyUI"})}, (), output_node=True,
                          category="image", hidden=_HIDDEN),
    "PreviewImage": NodeSpec({"images": ("IMAGE",)}, (), output_node=True, category="image", hidden=_HIDDEN),
    "EmptyImage": NodeSpec({"width": _int(512, 1, 16384, step=1), "height": _int(512, 1, 16384, step=1),
                            "batch_size": _int(1, 1, 4096), "color": _int(0, 0, 16777215, step=1)}, ("IMAGE",),
                           category="image"),
    "ImageAddNoise": NodeSpec({"image": ("IMAGE",), "seed": SEED, "strength": _float(0.5, 0.0, 1.0, step=0.01)},
                              ("IMAGE",), category="image", python_module="comfy_extras.nodes_images"),
    # a Stable Diffusion pipeline (no weights: the generator makes the pixels)
    "CheckpointLoaderSimple": NodeSpec({"ckpt_name": (FILES, {})}, ("MODEL", "CLIP", "VAE"), category="loaders"),
    "VAELoader": NodeSpec({"vae_name": (FILES, {})}, ("VAE",), category="loaders"),
    "UNETLoader": NodeSpec({"unet_name": (FILES, {}), "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e5m2"], {})},
                           ("MODEL",), category="loaders"),
    "DualCLIPLoader": NodeSpec({"clip_name1": (FILES, {}), "clip_name2": (FILES, {}),
                                "type": (["sdxl", "sd3", "flux", "hunyuan_video"], {})}, ("CLIP",), category="loaders"),
    "LoraLoader": NodeSpec({"model": ("MODEL",), "clip": ("CLIP",), "lora_name": (FILES, {}),
                            "strength_model": _float(1.0, -100.0, 100.0), "strength_clip": _float(1.0, -100.0, 100.0)},
                           ("MODEL", "CLIP"), category="loaders"),
    "CLIPSetLastLayer": NodeSpec({"clip": ("CLIP",), "stop_at_clip_layer": _int(-1, -24, -1)}, ("CLIP",)),
    "CLIPTextEncode": NodeSpec({"text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)},
                               ("CONDITIONING",), category="conditioning"),
    "FluxGuidance": NodeSpec({"conditioning": ("CONDITIONING",), "guidance": _float(3.5, 0.0, 100.0)},
                             ("CONDITIONING",)),
    "EmptyLatentImage": NodeSpec({"width": _int(512, 16, 16384, step=8), "height": _int(512, 16, 16384, step=8),
                                  "batch_size": _int(1, 1, 4096)}, ("LATENT",), category="latent"),
    "EmptySD3LatentImage": NodeSpec({"width": _int(1024, 16, 16384, step=16), "height": _int(1024, 16, 16384, step=16),
                                     "batch_size": _int(1, 1, 4096)}, ("LATENT",), category="latent"),
    "KSampler": NodeSpec({"model": ("MODEL",), "seed": SEED, "steps": _int(20, 1, 10000),
                          "cfg": _float(8.0, 0.0, 100.0, step=0.1, round=0.01), "sampler_name": (SAMPLERS, {}),
                          "scheduler": (SCHEDULERS, {}), "positive": ("CONDITIONING",),
                          "negative": ("CONDITIONING",), "latent_image": ("LATENT",),
                          "denoise": _float(1.0, 0.0, 1.0, step=0.01)}, ("LATENT",), category="sampling"),
    "KSamplerAdvanced": NodeSpec({"model": ("MODEL",), "add_noise": (["enable", "disable"], {}), "noise_seed": SEED,
                                  "steps": _int(20, 1, 10000), "cfg": _float(8.0, 0.0, 100.0),
                                  "sampler_name": (SAMPLERS, {}), "scheduler": (SCHEDULERS, {}),
                                  "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                                  "latent_image": ("LATENT",), "start_at_step": _int(0, 0, 10000),
                                  "end_at_step": _int(10000, 0, 10000),
                                  "return_with_leftover_noise": (["disable", "enable"], {})},
                                 ("LATENT",), category="sampling"),
    "RandomNoise": NodeSpec({"noise_seed": SEED}, ("NOISE",), category="sampling/custom_sampling/noise"),
    "KSamplerSelect": NodeSpec({"sampler_name": (SAMPLERS, {})}, ("SAMPLER",)),
    "BasicScheduler": NodeSpec({"model": ("MODEL",), "scheduler": (SCHEDULERS, {}), "steps": _int(20, 1, 10000),
                                "denoise": _float(1.0, 0.0, 1.0)}, ("SIGMAS",)),
    "BasicGuider": NodeSpec({"model": ("MODEL",), "conditioning": ("CONDITIONING",)}, ("GUIDER",)),
    "CFGGuider": NodeSpec({"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                           "cfg": _float(8.0, 0.0, 100.0)}, ("GUIDER",)),
    "SamplerCustomAdvanced": NodeSpec({"noise": ("NOISE",), "guider": ("GUIDER",), "sampler": ("SAMPLER",),
                                       "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}, ("LATENT", "LATENT")),
    "VAEDecode": NodeSpec({"samples": ("LATENT",), "vae": ("VAE",)}, ("IMAGE",), category="latent"),
}


# ----------------------------------------------------------------------------------------- PNG helpers

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_text_chunks(png: bytes) -> dict[str, str]:
    """tEXt chunks of a PNG, in file order (``{key: value}``)."""
    out: dict[str, str] = {}
    pos = 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        data = png[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and b"\0" in data:
            key, _, value = data.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return out


def png_chunk_order(png: bytes) -> list[str]:
    kinds, pos = [], 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kinds.append(png[pos + 4:pos + 8].decode("latin-1"))
        if kinds[-1] == "IEND":
            break
        pos += 12 + length
    return kinds


def add_comfy_metadata(png: bytes, graph: dict[str, Any], extra_pnginfo: dict[str, Any] | None = None) -> bytes:
    """Insert tEXt ``prompt`` (the API graph, ``json.dumps``) and one tEXt per ``extra_pnginfo`` key right
    after IHDR, as SaveImage does. Non-PNG bytes and PNGs that already carry a ``prompt`` are returned as is."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n") or "prompt" in png_text_chunks(png):
        return png
    (ihdr_len,) = struct.unpack(">I", png[8:12])
    cut = 8 + 12 + ihdr_len
    chunks = [_chunk(b"tEXt", b"prompt\0" + json.dumps(graph).encode("latin-1"))]
    for key, value in (extra_pnginfo or {}).items():
        chunks.append(_chunk(b"tEXt", key.encode("latin-1") + b"\0" + json.dumps(value).encode("latin-1")))
    return png[:cut] + b"".join(chunks) + png[cut:]


def _coerce_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def graph_seeds(graph: dict[str, Any]) -> list[int]:
    """Every constant ``seed`` / ``noise_seed`` input of the graph, in node id order."""
    seeds = []
    for nid in sorted(graph, key=lambda k: (len(str(k)), str(k))):
        inputs = (graph[nid] or {}).get("inputs") or {}
        for name in ("seed", "noise_seed"):
            v = _coerce_int(inputs.get(name)) if not isinstance(inputs.get(name), list) else None
            if v is not None:
                seeds.append(v)
    return seeds


def graph_size(graph: dict[str, Any]) -> tuple[int, int, int]:
    """(width, height, batch) from the first node with constant width and height (64x64x1 if none)."""
    for nid in sorted(graph, key=lambda k: (len(str(k)), str(k))):
        inputs = (graph[nid] or {}).get("inputs") or {}
        w, h = _coerce_int(inputs.get("width")), _coerce_int(inputs.get("height"))
        if w and h and not isinstance(inputs.get("width"), list):
            b = _coerce_int(inputs.get("batch_size")) or 1
            return w, h, max(1, b)
    return 64, 64, 1


def default_generator(graph: dict[str, Any]) -> list[bytes]:
    """One RGB PNG per batch item whose pixels depend on the graph's seeds (numpy RNG seeded with them)."""
    from PIL import Image

    w, h, batch = graph_size(graph)
    seeds = graph_seeds(graph) or [0]
    images = []
    for i in range(batch):
        rng = np.random.default_rng([s % 2 ** 64 for s in seeds] + [i])
        base = rng.integers(0, 256, size=3)
        noise = rng.integers(-40, 41, size=(h, w, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, "PNG", compress_level=4)
        images.append(buf.getvalue())
    return images


def seeded_png(graph: dict[str, Any], extra_pnginfo: dict[str, Any] | None = None) -> bytes:
    """What SaveImage would write for ``graph`` with the default generator: pixels + tEXt ``prompt``."""
    return add_comfy_metadata(default_generator(graph)[0], graph, extra_pnginfo)


# ----------------------------------------------------------------------------------------- the server

class _Interrupted(Exception):
    pass


class _NodeFailed(Exception):
    def __init__(self, node_id: str, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.node_id, self.exc = node_id, exc


@dataclass
class _Item:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    client_id: str | None

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


def _ms() -> int:
    return int(time.time() * 1000)


def _link(val: Any) -> bool:
    return isinstance(val, list)


class FakeComfyUI:
    """A ComfyUI stand-in running in a background thread with its own event loop."""

    def __init__(self, *, api_routes: bool = True, error_shape: str = "new",
                 generator: Callable[[dict[str, Any]], bytes | list[bytes]] | None = None,
                 node_delay: float = 0.0, http_delay: float = 0.0, version: str | None = "0.3.64",
                 node_specs: dict[str, NodeSpec] | None = None) -> None:
        self.api_routes = api_routes
        self.error_shape = error_shape
        self.generator = generator or default_generator
        self.node_hook: Callable[[dict[str, Any], str], None] | None = None
        self.node_delay = node_delay
        self.http_delay = http_delay
        #: ``{"POST /prompt": 0.5}``: answer that route late, after doing the work (a lost answer)
        self.slow_answers: dict[str, float] = {}
        self.version = version
        self.node_specs = dict(node_specs or NODE_SPECS)
        self.model_files: list[str] | None = None
        self.ws_mode = "ok"
        self.drop_ws_on: str | None = None
        self.refuse_ws_after_drop = False
        self.requests: list[dict[str, Any]] = []
        self.frames_sent: list[tuple[str | None, dict[str, Any]]] = []
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.submitted: list[tuple[str, dict[str, Any]]] = []
        self.history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._fail: list[int] = []
        self._number = 0
        self._pending: list[_Item] = []
        self._running: _Item | None = None
        self._current_node: str | None = None
        self._interrupt = False
        self._cache: dict[str, dict[str, Any] | None] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._all_sockets: set[web.WebSocketResponse] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.port = 0

    # ---- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeComfyUI:
        ready = threading.Event()
        self._loop = loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-comfyui", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake ComfyUI did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
        try:
            fut.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop.close()
            self._loop = None

    def __enter__(self) -> FakeComfyUI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._mw_log, self._mw_origin, self._mw_chaos, self._mw_api],
                              client_max_size=64 * 2 ** 20)
        routes = [
            ("GET", "/ws", self._h_ws), ("GET", "/prompt", self._h_get_prompt),
            ("POST", "/prompt", self._h_post_prompt),
            ("GET", "/queue", self._h_get_queue), ("POST", "/queue", self._h_post_queue),
            ("GET", "/history", self._h_get_history), ("GET", "/history/{prompt_id}", self._h_get_history_id),
            ("POST", "/history", self._h_post_history), ("GET", "/view", self._h_view),
            ("POST", "/interrupt", self._h_interrupt), ("POST", "/free", self._h_free),
            ("GET", "/system_stats", self._h_system_stats), ("GET", "/object_info", self._h_object_info),
            ("GET", "/object_info/{node_class}", self._h_object_info), ("GET", "/features", self._h_features),
            ("GET", "/embeddings", self._h_empty_list), ("GET", "/extensions", self._h_empty_list),
        ]
        app.router.add_route("GET", "/", self._h_index)
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._wake = asyncio.Event()
        self._worker = asyncio.create_task(self._work())

    async def _stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        for ws in list(self._all_sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _call(self, coro: Any, timeout: float = 10) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ---- knobs callable from the test thread

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` HTTP requests (not the websocket) with ``status`` and a text body."""
        self._fail.extend([status] * n)

    def drop_sockets(self) -> None:
        """Close every websocket now."""
        self._call(self._drop_all())

    def clear_cache(self) -> None:
        self._cache.clear()

    def queue_ids(self) -> tuple[list[str], list[str]]:
        return ([self._running.prompt_id] if self._running else []), [i.prompt_id for i in self._pending]

    def wait_idle(self, timeout: float = 10) -> None:
        end = time.monotonic() + timeout
        while (self._running or self._pending) and time.monotonic() < end:
            time.sleep(0.01)

    # ---- middlewares

    @web.middleware
    async def _mw_log(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        body = None
        if request.method == "POST" and request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
        self.requests.append({"method": request.method, "path": request.path, "query": dict(request.query),
                              "headers": dict(request.headers), "json": body})
        return await handler(request)

    @web.middleware
    async def _mw_origin(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        # ComfyUI's origin_only_middleware
        if "Host" in request.headers and "Origin" in request.headers:
            host_domain = request.headers["Host"].lower()
            parsed = urllib.parse.urlparse(request.headers["Origin"])
            origin_domain = parsed.netloc.lower()
            host_parsed = urllib.parse.urlsplit("//" + host_domain)
            loopback = host_parsed.hostname in ("localhost", "127.0.0.1", "::1")
            if parsed.port is None:
                host_domain = host_parsed.hostname or ""
            if host_parsed.port is None:
                origin_domain = parsed.hostname or ""
            if loopback and host_domain and origin_domain and host_domain != origin_domain:
                return web.Response(status=403)
        return await handler(request)

    @web.middleware
    async def _mw_chaos(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path.endswith("/ws"):
            return await handler(request)
        if self.http_delay:
            await asyncio.sleep(self.http_delay)
        if self._fail:
            status = self._fail.pop(0)
            text = "500 Internal Server Error\n\nServer got itself in trouble" if status == 500 else f"{status} error"
            return web.Response(status=status, text=text)
        response = await handler(request)
        route = request.path[4:] if request.path.startswith("/api/") else request.path
        late = self.slow_answers.get(f"{request.method} {route}")
        if late:
            await asyncio.sleep(late)
        return response

    @web.middleware
    async def _mw_api(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if not self.api_routes and (request.path == "/api" or request.path.startswith("/api/")):
            return web.Response(status=404, text="404: Not Found")
        return await handler(request)

    # ---- websocket

    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        if self.ws_mode == "refuse":
            return web.Response(status=403)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets[sid] = ws  # a reconnect with the same clientId silences the old socket
        self._all_sockets.add(ws)
        try:
            if self.ws_mode != "silent":
                await ws.send_str(json.dumps({"type": "status", "data": {
                    "status": {"exec_info": {"queue_remaining": self._queue_remaining()}}, "sid": sid}}))
                if self._running is not None and self._running.client_id == sid and self._current_node is not None:
                    await ws.send_str(json.dumps({"type": "executing", "data": {"node": self._current_node}}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        continue
                    if isinstance(data, dict) and data.get("type") == "feature_flags" and self.ws_mode != "silent":
                        await ws.send_str(json.dumps({"type": "feature_flags", "data": FEATURES}))
        finally:
            self._all_sockets.discard(ws)
            if self._sockets.get(sid) is ws:
                del self._sockets[sid]
        return ws

    async def _drop_all(self) -> None:
        for ws in list(self._all_sockets):
            await ws.close()
        self._sockets.clear()

    async def _emit(self, kind: str, data: dict[str, Any], client_id: str | None, *, broadcast: bool = False) -> None:
        if self.drop_ws_on == kind:
            self.drop_ws_on = None
            if self.refuse_ws_after_drop:
                self.ws_mode = "refuse"
            await self._drop_all()
            return
        if self.ws_mode == "silent":
            return
        msg = json.dumps({"type": kind, "data": data})
        targets = list(self._sockets.items()) if broadcast else (
            [(client_id, self._sockets[client_id])] if client_id in self._sockets else [])
        for sid, ws in targets:
            if ws.closed:
                continue
            self.frames_sent.append((sid, {"type": kind, "data": data}))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(msg)

    def _queue_remaining(self) -> int:
        return len(self._pending) + (1 if self._running else 0)

    async def _status(self) -> None:
        await self._emit("status", {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}},
                         None, broadcast=True)

    # ---- plain routes

    async def _h_get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self._queue_remaining()}})

    async def _h_get_queue(self, request: web.Request) -> web.Response:
        return web.json_response({"queue_running": [self._running.as_list()] if self._running else [],
                                  "queue_pending": [i.as_list() for i in self._pending]})

    async def _h_post_queue(self, request: web.Request) -> web.Response:
        body = await self._json_body(request) or {}
        if body.get("clear"):
            self._pending.clear()
        if "delete" in body:
            gone = {str(x) for x in body["delete"]}
            self._pending = [i for i in self._pending if i.prompt_id not in gone]
        return web.Response(status=200)

    async def _h_get_history(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        max_items = request.query.get("max_items")
        offset = int(request.query.get("offset", -1))
        if max_items is not None:
            n = int(max_items)
            if offset < 0:
                offset = max(0, len(items) - n)
            items = items[offset:offset + n]
        return web.json_response(dict(items))

    async def _h_get_history_id(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _h_post_history(self, request: web.Request) -> web.Response:
        body = await self._json_body(request) or {}
        if body.get("clear"):
            self.history.clear()
        for pid in body.get("delete") or []:
            self.history.pop(str(pid), None)
        return web.Response(status=200)

    async def _h_view(self, request: web.Request) -> web.Response:
        q = request.query
        filename = q.get("filename")
        if not filename:
            return web.Response(status=404)
        kind = q.get("type", "output")
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        if kind not in ("output", "input", "temp"):
            return web.Response(status=400)
        subfolder = q.get("subfolder", "")
        if ".." in subfolder.split("/") or subfolder.startswith("/"):
            return web.Response(status=403)
        data = self.files.get((kind, subfolder, filename))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png",
                            headers={"Content-Disposition": f'filename="{filename}"'})

    async def _h_interrupt(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        target = body.get("prompt_id") if isinstance(body, dict) else None
        if self._running is not None and (target is None or target == self._running.prompt_id):
            self._interrupt = True
        return web.Response(status=200)

    async def _h_free(self, request: web.Request) -> web.Response:
        body = await self._json_body(request) or {}
        if body.get("free_memory") or body.get("unload_models"):
            self._cache.clear()
        return web.Response(status=200)

    async def _h_system_stats(self, request: web.Request) -> web.Response:
        stats = json.loads(json.dumps(SYSTEM_STATS))
        if self.version is None:
            stats["system"].pop("comfyui_version", None)
        else:
            stats["system"]["comfyui_version"] = self.version
        return web.json_response(stats)

    async def _h_object_info(self, request: web.Request) -> web.Response:
        wanted = request.match_info.get("node_class")
        names = [wanted] if wanted else sorted(self.node_specs)
        return web.json_response({n: self._object_info(n) for n in names if n in self.node_specs})

    def _object_info(self, name: str) -> dict[str, Any]:
        spec = self.node_specs[name]

        def conv(s: tuple) -> list:
            kind = self.model_files or [] if s[0] == FILES else s[0]
            return [kind, s[1]] if len(s) > 1 else [kind]

        inputs: dict[str, Any] = {"required": {k: conv(v) for k, v in spec.required.items()}}
        order: dict[str, Any] = {"required": list(spec.required)}
        if spec.optional:
            inputs["optional"] = {k: conv(v) for k, v in spec.optional.items()}
            order["optional"] = list(spec.optional)
        if spec.hidden:
            inputs["hidden"], order["hidden"] = dict(spec.hidden), list(spec.hidden)
        return {"input": inputs, "input_order": order, "output": list(spec.outputs),
                "output_is_list": [False] * len(spec.outputs), "output_name": list(spec.outputs), "name": name,
                "display_name": name, "description": "", "python_module": spec.python_module,
                "category": spec.category, "output_node": spec.output_node}

    async def _h_features(self, request: web.Request) -> web.Response:
        return web.json_response(FEATURES)

    async def _h_index(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><html><head><title>ComfyUI</title></head></html>",
                            content_type="text/html")

    async def _h_empty_list(self, request: web.Request) -> web.Response:
        return web.json_response([])

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    # ---- POST /prompt and validation

    def _error(self, etype: str, message: str, details: str, node_errors: Any) -> web.Response:
        if self.error_shape == "old":
            text = f"{message}: {details}" if details else message
            if etype == "no_prompt":
                return web.json_response({"error": "no prompt", "node_errors": []}, status=400)
            return web.json_response({"error": text, "node_errors": node_errors}, status=400)
        return web.json_response({"error": {"type": etype, "message": message, "details": details, "extra_info": {}},
                                  "node_errors": node_errors}, status=400)

    async def _h_post_prompt(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        if not isinstance(body, dict) or "prompt" not in body:
            return self._error("no_prompt", "No prompt provided", "No prompt provided", {})
        prompt = body["prompt"]
        number = self._number
        self._number += 1
        if not isinstance(prompt, dict):
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        pid = str(body.get("prompt_id") or uuid.uuid4())
        ok, error, good, node_errors = self._validate(prompt)
        if not ok:
            assert error is not None
            return self._error(error["type"], error["message"], error["details"], node_errors)
        extra = dict(body.get("extra_data") or {})
        client_id = body.get("client_id")
        if client_id is not None:
            extra["client_id"] = client_id
        item = _Item(number, pid, prompt, extra, good, client_id)
        if body.get("front"):
            self._pending.insert(0, item)
        else:
            self._pending.append(item)
        self.submitted.append((pid, prompt))
        await self._status()
        assert self._wake is not None
        self._wake.set()
        return web.json_response({"prompt_id": pid, "number": number, "node_errors": node_errors})

    def _validate(self, prompt: dict[str, Any]) -> tuple[bool, dict | None, list[str], dict[str, Any]]:
        outputs = []
        for nid, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return False, {"type": "invalid_prompt", "message": "Cannot execute because a node is missing the "
                               "class_type property.", "details": f"Node ID '#{nid}'"}, [], {}
            ct = node["class_type"]
            if ct not in self.node_specs:
                return False, {"type": "invalid_prompt", "message": f"Cannot execute because node {ct} does not "
                               "exist.", "details": f"Node ID '#{nid}'"}, [], {}
            if self.node_specs[ct].output_node:
                outputs.append(nid)
        if not outputs:
            return False, {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": ""}, [], {}
        validated: dict[str, tuple[bool, list, str]] = {}
        good: list[str] = []
        output_errors: list[tuple[str, list]] = []
        node_errors: dict[str, Any] = {}
        for o in outputs:
            try:
                valid, reasons = self._validate_inputs(prompt, o, validated)
            except Exception as ex:  # noqa: BLE001 - what ComfyUI does
                valid = False
                reasons = [{"type": "exception_during_validation", "message": "Exception when validating node",
                            "details": str(ex), "extra_info": {"exception_type": type(ex).__name__, "traceback": [
                                '  File "<comfyui>/execution.py", line 1010, in validate_prompt\n',
                                '  File "<comfyui>/execution.py", line 788, in validate_inputs\n']}}]
                validated[o] = (False, reasons, o)
            if valid:
                good.append(o)
                continue
            if reasons:
                output_errors.append((o, reasons))
            for node_id, (ok, rs, _) in validated.items():
                if not ok and rs:
                    entry = node_errors.setdefault(node_id, {"errors": rs, "dependent_outputs": [],
                                                             "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(o)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in output_errors for e in errs)
            return False, {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                           "details": details}, [], node_errors
        return True, None, good, node_errors

    def _validate_inputs(self, prompt: dict[str, Any], nid: str, validated: dict) -> tuple[bool, list]:
        if nid in validated:
            return validated[nid][0], validated[nid][1]
        node = prompt[nid]
        spec = self.node_specs[node["class_type"]]
        inputs = node.setdefault("inputs", {})
        errors: list[dict[str, Any]] = []
        valid = True
        for x, s in list(spec.required.items()) + list(spec.optional.items()):
            kind, opts = s[0], (s[1] if len(s) > 1 else {})
            info = [self.model_files or [] if kind == FILES else kind, opts]  # ComfyUI: (input_type, extra_info)
            if x not in inputs:
                if x in spec.required:
                    errors.append({"type": "required_input_missing", "message": "Required input is missing",
                                   "details": x, "extra_info": {"input_name": x}})
                continue
            val = inputs[x]
            if _link(val):
                if len(val) != 2:
                    errors.append({"type": "bad_linked_input", "message": "Bad linked input, must be a length-2 list "
                                   "of [node_id, slot_index]", "details": x,
                                   "extra_info": {"input_name": x, "input_config": info, "received_value": val}})
                    continue
                o_id = val[0]
                o_class = prompt[o_id]["class_type"]  # KeyError for a missing node, as in ComfyUI
                received = self.node_specs[o_class].outputs[val[1]]  # IndexError for a bad slot
                if isinstance(kind, str) and kind != FILES and kind not in (received, "*") and received != "*":
                    errors.append({"type": "return_type_mismatch", "message": "Return type mismatch between linked "
                                   "nodes", "details": f"{x}, received_type({received}) mismatch input_type({kind})",
                                   "extra_info": {"input_name": x, "input_config": info, "received_type": received,
                                                  "linked_node": val}})
                    continue
                ok, _ = self._validate_inputs(prompt, o_id, validated)
                if not ok:
                    valid = False
                continue
            try:
                if kind == "INT":
                    val = int(val)
                elif kind == "FLOAT":
                    val = float(val)
                elif kind == "STRING":
                    val = str(val)
                inputs[x] = val
            except Exception as ex:  # noqa: BLE001
                errors.append({"type": "invalid_input_type", "message": f"Failed to convert an input value to a "
                               f"{kind} value", "details": f"{x}, {val}, {ex}",
                               "extra_info": {"input_name": x, "input_config": info, "received_value": val,
                                              "exception_message": str(ex)}})
                continue
            if "min" in opts and val < opts["min"]:
                errors.append({"type": "value_smaller_than_min", "message": f"Value {val} smaller than min of "
                               f"{opts['min']}", "details": x,
                               "extra_info": {"input_name": x, "input_config": info, "received_value": val}})
                continue
            if "max" in opts and val > opts["max"]:
                errors.append({"type": "value_bigger_than_max", "message": f"Value {val} bigger than max of "
                               f"{opts['max']}", "details": x,
                               "extra_info": {"input_name": x, "input_config": info, "received_value": val}})
                continue
            choices = self.model_files if kind == FILES else (kind if isinstance(kind, list) else None)
            if choices is not None and val not in choices:
                errors.append({"type": "value_not_in_list", "message": "Value not in list",
                               "details": f"{x}: '{val}' not in {choices}",
                               "extra_info": {"input_name": x, "input_config": info, "received_value": val}})
        ret = (not errors and valid, errors, nid)
        validated[nid] = ret
        return ret[0], ret[1]

    # ---- execution

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._pending[0]
            self._running, self._interrupt = item, False  # running before it leaves pending: never "idle" between
            self._pending.pop(0)
            try:
                await self._execute(item)
            except Exception as exc:  # noqa: BLE001 - a bug in the fake must not hang tests silently
                self.history[item.prompt_id] = {"prompt": item.as_list(), "outputs": {},
                                                "status": {"status_str": "error", "completed": False,
                                                           "messages": [["fake_bug", {"error": repr(exc)}]]},
                                                "meta": {}}
            finally:
                self._running, self._current_node = None, None
            await self._status()
            await self._emit("executing", {"node": None, "prompt_id": item.prompt_id}, item.client_id)

    def _order(self, prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []

        def visit(nid: str) -> None:
            if nid in order:
                return
            for val in (prompt[nid].get("inputs") or {}).values():
                if _link(val) and str(val[0]) in prompt:
                    visit(str(val[0]))
            order.append(nid)

        for o in outputs:
            visit(o)
        return order

    def _signatures(self, prompt: dict[str, Any], order: list[str]) -> dict[str, str]:
        sigs: dict[str, str] = {}
        for nid in order:
            node = prompt[nid]
            inputs = {}
            for k, v in sorted((node.get("inputs") or {}).items()):
                inputs[k] = ["link", sigs.get(str(v[0])), v[1]] if _link(v) else v
            sigs[nid] = hashlib.sha256(json.dumps([node["class_type"], inputs], sort_keys=True,
                                                  default=str).encode()).hexdigest()
        return sigs

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if self._interrupt:
                raise _Interrupted()
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.02))

    async def _execute(self, item: _Item) -> None:
        prompt, pid, cid = item.prompt, item.prompt_id, item.client_id
        order = self._order(prompt, item.outputs)
        sigs = self._signatures(prompt, order)
        cached = [n for n in order if sigs[n] in self._cache]
        messages: list[list[Any]] = []
        outputs: dict[str, Any] = {}
        new_cache: dict[str, dict[str, Any] | None] = {}
        executed: list[str] = []
        states: dict[str, dict[str, Any]] = {}

        async def msg(kind: str, data: dict[str, Any]) -> None:
            messages.append([kind, data])
            await self._emit(kind, data, cid)

        def pstate(nid: str, state: str) -> dict[str, Any]:
            done = state == "finished"
            states[nid] = {"value": 1.0 if done else 0.0, "max": 1.0, "state": state, "node_id": nid,
                           "prompt_id": pid, "display_node_id": nid, "parent_node_id": None, "real_node_id": nid}
            return {"prompt_id": pid, "nodes": {k: dict(v) for k, v in states.items()}}

        await self._status()
        await msg("execution_start", {"prompt_id": pid, "timestamp": _ms()})
        await msg("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _ms()})
        for nid in cached:
            new_cache[sigs[nid]] = self._cache[sigs[nid]]
            ui = self._cache[sigs[nid]]
            if ui is not None and nid in item.outputs:
                outputs[nid] = ui
                await self._emit("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid}, cid)
                states[nid] = {"value": 1, "max": 1, "state": "finished", "node_id": nid, "prompt_id": pid,
                               "display_node_id": nid, "parent_node_id": None, "real_node_id": nid}
                await self._emit("progress_state", {"prompt_id": pid, "nodes": {nid: dict(states[nid])}}, cid)
        try:
            for nid in order:
                if nid in cached:
                    continue
                if self._interrupt:
                    raise _Interrupted()
                self._current_node = nid
                await self._emit("progress_state", pstate(nid, "running"), cid)
                await self._emit("executing", {"node": nid, "display_node": nid, "prompt_id": pid}, cid)
                try:
                    ui = await self._run_node(item, nid)
                except _Interrupted:
                    raise
                except Exception as exc:  # noqa: BLE001 - becomes execution_error
                    raise _NodeFailed(nid, exc) from exc
                executed.append(nid)
                new_cache[sigs[nid]] = ui
                if ui is not None:
                    outputs[nid] = ui
                    await self._emit("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid},
                                     cid)
                await self._emit("progress_state", pstate(nid, "finished"), cid)
        except _Interrupted:
            at = self._current_node
            await msg("execution_interrupted", {"prompt_id": pid, "node_id": at,
                                                "node_type": prompt[at]["class_type"] if at else None,
                                                "executed": executed, "timestamp": _ms()})
            self._cache = new_cache
            self._record(item, {}, "error", messages)
            return
        except _NodeFailed as failed:
            cause = failed.exc
            await msg("execution_error", {
                "prompt_id": pid, "node_id": failed.node_id, "node_type": prompt[failed.node_id]["class_type"],
                "executed": executed, "exception_message": f"{cause}\n", "exception_type": type(cause).__name__,
                "traceback": ['  File "<comfyui>/execution.py", line 496, in execute\n'],
                "current_inputs": {}, "current_outputs": order, "timestamp": _ms()})
            self._cache = new_cache
            self._record(item, {}, "error", messages)
            return
        await msg("execution_success", {"prompt_id": pid, "timestamp": _ms()})
        self._cache = new_cache
        self._record(item, outputs, "success", messages)

    def _record(self, item: _Item, outputs: dict[str, Any], status: str, messages: list) -> None:
        meta = {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs}
        self.history.pop(item.prompt_id, None)  # a re-used prompt_id overwrites, as in ComfyUI
        self.history[item.prompt_id] = {
            "prompt": item.as_list(), "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": meta if status == "success" else {}}

    async def _run_node(self, item: _Item, nid: str) -> dict[str, Any] | None:
        prompt = item.prompt
        node = prompt[nid]
        ct, inputs = node["class_type"], node.get("inputs") or {}
        if self.node_hook is not None:
            self.node_hook(prompt, nid)
        if self.node_delay:
            await self._sleep(self.node_delay)
        if ct == "FailIfSeedEven" and int(inputs.get("seed", 0)) % 2 == 0:
            raise ValueError(f"sdeval_test_nodes: seed {int(inputs['seed'])} is even, refusing on purpose")
        if ct == "SlowPassthrough":
            steps = int(inputs.get("steps", 10))
            per = float(inputs.get("seconds", 2.0)) / max(1, steps)
            for i in range(steps):
                await self._sleep(per)
                await self._emit("progress", {"value": i + 1, "max": steps, "prompt_id": item.prompt_id, "node": nid},
                                 item.client_id)
        if ct in ("SaveImage", "PreviewImage"):
            return {"images": self._save(item, nid, ct)}
        if ct == "ImageStats":
            w, h, b = graph_size(prompt)
            return {"text": [f"shape=[{b}, {h}, {w}, 3] mean=0.5"]}
        return None

    def _save(self, item: _Item, nid: str, ct: str) -> list[dict[str, str]]:
        made = self.generator(item.prompt)
        images = [made] if isinstance(made, (bytes, bytearray)) else list(made)
        _, _, batch = graph_size(item.prompt)
        if len(images) == 1 and batch > 1:
            images = images * batch
        extra = (item.extra_data.get("extra_pnginfo") or {}) if isinstance(item.extra_data, dict) else {}
        if ct == "SaveImage":
            kind = "output"
            prefix = str((item.prompt[nid].get("inputs") or {}).get("filename_prefix", "ComfyUI"))
        else:
            kind = "temp"
            prefix = "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        subfolder, _, base = prefix.rpartition("/")
        out = []
        for data in images:
            counter = self._counters.get((subfolder, base), 0) + 1
            self._counters[(subfolder, base)] = counter
            filename = f"{base}_{counter:05d}_.png"
            self.files[(kind, subfolder, filename)] = add_comfy_metadata(bytes(data), item.prompt, extra)
            out.append({"filename": filename, "subfolder": subfolder, "type": kind})
        return out


@pytest.fixture
def comfy_fake() -> Iterator[FakeComfyUI]:
    """A running :class:`FakeComfyUI` (recorded 0.3.64 behaviour), stopped after the test."""
    with FakeComfyUI() as fake:
        yield fake


# graphs from the recordings, handy for tests
def noise_graph(seed: int = 12345, *, width: int = 64, height: int = 48, batch_size: int = 1,
                prefix: str = "sdeval/test") -> dict[str, Any]:
    """``SeededNoiseImage -> SaveImage`` as in ``04_prompt_valid``."""
    return {"1": {"class_type": "SeededNoiseImage",
                  "inputs": {"seed": seed, "width": width, "height": height, "batch_size": batch_size,
                             "text": "a red fox, photo"}, "_meta": {"title": "Seeded Noise Image"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix},
                  "_meta": {"title": "Save Image"}}}


def fail_graph(seed: int) -> dict[str, Any]:
    """``SeededNoiseImage -> FailIfSeedEven -> SaveImage`` as in ``09_execution_error``."""
    return {"1": {"class_type": "SeededNoiseImage", "inputs": {"seed": seed, "width": 32, "height": 32}},
            "2": {"class_type": "FailIfSeedEven", "inputs": {"image": ["1", 0], "seed": seed}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sdeval/fail"}}}


def slow_graph(seed: int, seconds: float, steps: int = 10) -> dict[str, Any]:
    """``SeededNoiseImage -> SlowPassthrough -> SaveImage`` as in ``11_queue_interrupt``."""
    return {"1": {"class_type": "SeededNoiseImage", "inputs": {"seed": seed, "width": 32, "height": 32}},
            "2": {"class_type": "SlowPassthrough", "inputs": {"image": ["1", 0], "seconds": seconds, "steps": steps}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sdeval/slow"}}}


def sd_graph(seed: int = 1, text: str = "a red fox, photo", *, width: int = 64, height: int = 64) -> dict[str, Any]:
    """A Stable Diffusion txt2img graph (checkpoint, two prompts, KSampler, VAEDecode, SaveImage)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
