"""What the regeneration loop submits for an image, and how a seed, a reworded prompt or face
restoration change it: an edited ComfyUI graph (the image's own, or ``--workflow``) or an
AUTOMATIC1111 txt2img body rebuilt from the row's metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sdeval.formats.comfyui_graph import GraphError, insert_face_nodes
from sdeval.gates.mutations import FaceRestore, GraphPlan, RepromptStrategy


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt's mutation. Reprompt level and face restoration are sticky along a lineage:
    once the prompt was reworded or a face restored, later reseeds keep doing so."""

    attempt: int
    mutation: str
    seed: int
    reprompt_level: int = 0
    restore_face: bool = False
    #: names the attempt's files on the server (SaveImage filename_prefix)
    prefix: str = ""


@dataclass(frozen=True)
class Submission:
    """What goes to the server, and the positive prompt it carries (for the lineage)."""

    payload: dict[str, Any]
    prompt: str | None


class Recipe(Protocol):
    source: str
    seed: int | None
    prompt: str | None

    def face_problem(self) -> str | None:
        """Why a face cannot be restored with this recipe (None: it can)."""

    def reprompt_problem(self) -> str | None:
        """Why the prompt cannot be reworded with this recipe (None: it can)."""

    def build(self, spec: AttemptSpec) -> Submission:
        """The payload for one attempt."""



@dataclass(frozen=True)
class ComfyRecipe:
    """An image's graph plan plus the policy's rewording and face restoration."""

    plan: GraphPlan
    source: str
    reprompt: RepromptStrategy = field(default_factory=RepromptStrategy)
    face: FaceRestore | None = None
    #: the face workflow with this image's prompt and seed placed (workflow mode)
    face_plan: GraphPlan | None = None
    face_error: str | None = None

    @property
    def seed(self) -> int | None:
        return self.plan.seed

    @property
    def prompt(self) -> str | None:
        return self.plan.prompt

    def face_problem(self) -> str | None:
        if self.face is None:
            return ("restore_face asked for, but the policy configures no face-restoration step: set "
                    "[regenerate] restore_face_workflow (an API-format workflow) or restore_face_nodes")
        return self.face_error

    def reprompt_problem(self) -> str | None:
        if not self.plan.prompts:
            return ("reprompt asked for, but the graph's positive prompt is not a literal text input "
                    "(it is built by other nodes); pass --workflow FILE with a plain prompt input")
        return None

    def build(self, spec: AttemptSpec) -> Submission:
        level = spec.reprompt_level
        reword: Callable[[str], str] | None = (lambda t: self.reprompt.apply(t, level)) if level else None
        plan = self.plan
        if spec.restore_face and self.face_plan is not None:
            plan = self.face_plan
        graph = plan.build(spec.seed, reword, spec.prefix or None)
        if spec.restore_face and self.face_plan is None:
            if self.face is None or self.face.nodes is None:
                raise GraphError(self.face_problem() or "no face restoration configured")
            graph = insert_face_nodes(graph, self.face.nodes, self.face.output)
        return Submission(payload=graph, prompt=plan.prompt_after(reword))


def comfy_recipe(graph: Mapping[str, Any], source: str, *, reprompt: RepromptStrategy | None = None,
                 face: FaceRestore | None = None, place: tuple[str | None, int | None] | None = None,
                 ) -> ComfyRecipe:
    """A recipe from a graph; ``place=(prompt, seed)`` puts an image's values into a workflow.

    Raises :class:`GraphError` (the row's reason) when the graph cannot be regenerated.
    """
    what = "the embedded graph" if place is None else source
    plan = GraphPlan.from_graph(graph, what)
    if place is not None:
        plan = plan.placed(place[0], place[1], what)
    face_plan = face_error = None
    if face is not None and face.workflow is not None:
        try:
            face_plan = GraphPlan.from_graph(face.workflow, f"restore_face_workflow {face.workflow_path}")
            face_plan = face_plan.placed(plan.prompt, plan.seed, f"restore_face_workflow {face.workflow_path}")
        except GraphError as exc:
            face_error = str(exc)
    elif face is not None and face.nodes is not None:
        try:
            insert_face_nodes(dict(plan.graph), face.nodes, face.output)
        except GraphError as exc:
            face_error = str(exc)
    return ComfyRecipe(plan=plan, source=source, reprompt=reprompt or RepromptStrategy(), face=face,
                       face_plan=face_plan, face_error=face_error)



@dataclass(frozen=True)
class A1111Recipe:
    """A txt2img body rebuilt from an image's metadata row."""

    body: Mapping[str, Any]
    source: str
    reprompt: RepromptStrategy = field(default_factory=RepromptStrategy)

    @property
    def seed(self) -> int | None:
        return self.body.get("seed")

    @property
    def prompt(self) -> str | None:
        return self.body.get("prompt")

    def face_problem(self) -> str | None:
        return None  # A1111's own restore_faces (GFPGAN / CodeFormer, as set in its settings)

    def reprompt_problem(self) -> str | None:
        return None

    def build(self, spec: AttemptSpec) -> Submission:
        body = dict(self.body)
        body["seed"] = spec.seed
        if spec.reprompt_level:
            body["prompt"] = self.reprompt.apply(str(body["prompt"]), spec.reprompt_level)
        if spec.restore_face:
            body["restore_faces"] = True
        return Submission(payload=body, prompt=body["prompt"])


def a1111_recipe(row: Mapping[str, Any], *, reprompt: RepromptStrategy | None = None) -> A1111Recipe:
    """From the row's metadata columns; :class:`GraphError` when there is no prompt to send."""
    prompt = row.get("prompt")
    if not prompt:
        raise GraphError("the image's metadata has no prompt to send to txt2img")
    width = row.get("base_width") or row.get("width")
    height = row.get("base_height") or row.get("height")
    body: dict[str, Any] = {"prompt": prompt, "negative_prompt": row.get("negative_prompt") or "",
                            "seed": row.get("seed"), "batch_size": 1, "n_iter": 1,
                            "send_images": True, "save_images": False}
    for key, value in (("width", width), ("height", height), ("steps", row.get("steps")),
                       ("cfg_scale", row.get("cfg"))):
        if value is not None:
            body[key] = value
    if "a1111" in str(row.get("source") or ""):  # other tools name samplers and models differently
        if row.get("sampler"):
            body["sampler_name"] = row["sampler"]
        if row.get("scheduler"):
            body["scheduler"] = row["scheduler"]
        if row.get("model"):
            body["override_settings"] = {"sd_model_checkpoint": row["model"]}
            body["override_settings_restore_afterwards"] = True
    return A1111Recipe(body=body, source="a1111 txt2img from the image's metadata",
                       reprompt=reprompt or RepromptStrategy())
