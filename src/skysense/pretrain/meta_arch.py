"""SkySense's self-supervised pretraining (Guo et al., CVPR 2024, Sec. 3.2–3.3) as a student/teacher
meta-architecture, in the manner of DINOv2's ``SSLMetaArch``.

Two augmented views of each multi-modal sample go through the student and the EMA teacher. Views share their frames
and flips; each view may have its own crop (``boxes``: the crop of each view in fractions of the sample, the same for
all its modalities), in which case the teacher's features are resampled onto the student view's grid and locations
outside the overlap are left out of the pixel and object levels; without boxes, location l of one view is location l
of the other. Views also differ in photometric augmentation and date jitter. Losses, each switched on by its
weight:

* multi-granularity contrast on every source (HR, S2, S1 spatial features on the grid, and the fused
  concat[F, F_geo]): pixel level (per sampled location, and per frame for the time series), object level (teacher
  pixel features clustered by Sinkhorn-Knopp; both views pooled with the teacher's assignment), image level (mean
  over valid locations and frames) — DINO self-distillation with centering by default, InfoNCE as an option;
* cross-modal alignment: InfoNCE between co-located features of two modalities (HR–S2, HR–S1, S2–S1);
* geo-context prototype learning: gradient-free Sinkhorn assignment of the teacher's fused features to their
  region's prototypes and an EMA update of the bank (:mod:`skysense.losses.prototype`);
* KoLeo (DINOv2): spreads each source's image-level student features over the batch.

Once per optimiser step, :meth:`SSLMetaArch.finish_step` moves the DINO centres and the prototype bank with the
statistics that the step's forwards accumulated, summed over processes in **one** collective of a fixed size. The
forward itself runs no collective, so processes whose batches hold different modalities, frames or coordinates
(and so take different branches) stay in step under DDP and FSDP.

Losses never live in the backbone; every loss is computed in fp32 outside autocast.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from skysense.batch import SkySenseInput, SkySenseOutput
from skysense.losses.clustering import cluster_assignments, pool_objects
from skysense.losses.dino import DINOLoss, koleo_loss
from skysense.losses.distributed import all_reduce_sum
from skysense.losses.infonce import InfoNCELoss
from skysense.losses.prototype import apply_prototype_update, prototype_statistics
from skysense.models.projection import ProjectionHeadsConfig, build_projection_heads
from skysense.models.skysense import SkySense

SOURCES = ("hr", "s2", "s1", "fused")


@dataclass
class PretrainConfig:
    """Objectives and their settings (the paper publishes none of these values: ours are DINO/DINOv2 defaults)."""

    pixel_weight: float = 1.0
    object_weight: float = 1.0
    image_weight: float = 1.0
    cross_modal_weight: float = 0.5
    prototype_momentum: float = 0.99  # EMA of the geo-context bank; 1.0 freezes it
    contrast: str = "dino"  # "dino" (self-distillation with centering) or "infonce"
    centering: str = "center"  # DINO teacher centering: "center" (EMA mean) or "sinkhorn"
    student_temperature: float = 0.1
    teacher_temperature: float = 0.07  # after the warm-up (DINOv2: 0.04 → 0.07)
    teacher_temperature_start: float = 0.04
    teacher_temperature_warmup: float = 0.3  # fraction of training over which τ_t rises linearly (DINOv2: 30 %)
    center_momentum: float = 0.9
    koleo_weight: float = 0.1  # DINOv2's weight; 0 switches the term off
    infonce_temperature: float = 0.2
    num_objects: int = 8  # object clusters per image
    max_locations: int = 256  # grid locations sampled per image for the pixel level and cross-modal alignment
    teacher_momentum_start: float = 0.996
    teacher_momentum_end: float = 1.0
    # the two views through the student (and the teacher) in one call when their shapes match: half the kernel
    # launches, which is what a step at the recipe's small per-GPU batch is bound by on a GPU (issue 15)
    join_views: bool = True
    # the teacher's BatchNorms (the conv stem's): "student" copy the student's running statistics at every EMA step
    # and normalise with them; "own" normalise with the batch and keep running statistics of the teacher's own
    # activations, as DINO's teacher (in train mode) does. At 20 CPU-minutes "own" probed 0.4 points lower for the
    # teacher (75.4 against 75.8; docs/benchmarks.md, issue 16, tenth day)
    teacher_batchnorm: str = "student"


class SSLMetaArch(nn.Module):
    """Student and EMA teacher (each a SkySense backbone + projection heads) and the pretraining losses."""

    def __init__(self, backbone: SkySense, heads: ProjectionHeadsConfig, config: PretrainConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PretrainConfig()
        if config.contrast not in ("dino", "infonce"):
            raise ValueError(f"contrast must be 'dino' or 'infonce', got {config.contrast!r}")
        if config.teacher_batchnorm not in ("own", "student"):
            raise ValueError(f"teacher_batchnorm must be 'own' or 'student', got {config.teacher_batchnorm!r}")
        present = {"hr": backbone.hr, "s2": backbone.s2, "s1": backbone.s1, "fused": backbone.geo}
        heads = dataclasses.replace(
            heads, source_dims={k: v for k, v in heads.source_dims.items() if present.get(k) is not None}
        )  # no heads for modalities the backbone does not have
        self.student = nn.ModuleDict({"backbone": backbone, "heads": build_projection_heads(heads)})
        self.teacher = copy.deepcopy(self.student)
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        # the buffers the EMA step leaves to the teacher: the prototype bank (its own update) and, with
        # teacher_batchnorm "own", the BatchNorms' running statistics
        self._teacher_own_buffers = {name for name, _ in self.teacher.named_buffers() if name.endswith("bank")}
        if config.teacher_batchnorm == "own":
            self._teacher_own_buffers |= {
                f"{prefix}.{name}" if prefix else name
                for prefix, module in self.teacher.named_modules()
                if isinstance(module, nn.modules.batchnorm._BatchNorm)
                for name, _ in module.named_buffers(recurse=False)
            }
        self.dino = nn.ModuleDict(
            {
                name: DINOLoss(
                    heads.num_prototypes,
                    config.student_temperature,
                    self.teacher_temperature(0.0),
                    config.center_momentum,
                    config.centering,
                )
                for name in self.student["heads"]
            }
        )
        geo = self.teacher["backbone"].geo
        if geo is not None:  # this step's prototype statistics (R, P, d + 2), applied by finish_step
            pending = torch.zeros(*geo.bank.shape[:-1], geo.bank.shape[-1] + 2, device=geo.bank.device)
            self.register_buffer("prototype_pending", pending, persistent=False)
        else:
            self.prototype_pending = None
        self.infonce = InfoNCELoss(config.infonce_temperature)
        self.alignment = InfoNCELoss(config.infonce_temperature)

    def train(self, mode: bool = True) -> SSLMetaArch:
        """The teacher runs in eval mode: no stochastic depth or dropout in the targets (as in DINO/DINOv2, whose
        teacher is built without drop path). With ``teacher_batchnorm="own"`` its BatchNorms follow ``mode``: in
        training they normalise with the batch's statistics and keep running statistics of the teacher's own
        activations, which a lagging average of the student's weights does not share with the student (DINO's
        teacher, in train mode, does the same)."""
        super().train(mode)
        self.teacher.eval()
        if mode and self.config.teacher_batchnorm == "own":
            for module in self.teacher.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.train()
        return self

    # ------------------------------------------------------------------------------------------------------------
    @staticmethod
    def source_tokens(out: SkySenseOutput, batch: SkySenseInput) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per source: tokens (B, T, L, C) over time steps T and grid locations L, and their validity (B, T).

        HR and fused have T = 1; for the Sentinel series T is the number of frames.
        """
        size = batch.batch_size
        tokens = {}
        if out.hr_features is not None:
            hr_valid = batch.hr_valid if batch.hr_valid is not None else torch.ones(size, dtype=torch.bool)
            tokens["hr"] = (rearrange(out.hr_features[-1], "b c h w -> b 1 (h w) c"), hr_valid.view(size, 1))
        for name in ("s2", "s1"):
            features = getattr(out, f"{name}_features")
            if features is not None:
                valid = getattr(batch, f"{name}_valid")
                if valid is None:
                    valid = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
                tokens[name] = (rearrange(features, "b t c h w -> b t (h w) c"), valid)
        if out.geo is not None:  # the fused source is concat[F, F_geo]; batches without coordinates skip it
            tokens["fused"] = (
                rearrange(out.features, "b c h w -> b 1 (h w) c"),
                torch.ones(size, 1, dtype=torch.bool, device=out.features.device),
            )
        return tokens

    def _contrast(self, head: str, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Contrast student items (N, C) with the teacher's (N, C) through projection head ``head``."""
        student_logits = self.student["heads"][head](student)
        with torch.no_grad():
            teacher_logits = self.teacher["heads"][head](teacher)
        if self.config.contrast == "dino":
            targets = self.dino[head].teacher_probabilities(teacher_logits)
            return self.dino[head](student_logits, targets)
        return self.infonce(student_logits, teacher_logits)

    def forward(
        self,
        views: tuple[SkySenseInput, SkySenseInput],
        boxes: tuple[torch.Tensor, torch.Tensor] | None = None,
        local_views: tuple[SkySenseInput, ...] = (),
    ) -> dict[str, torch.Tensor]:
        """All losses for two views; returns {"loss": weighted total, "<term>": each term, monitors...}.

        Args:
            views: the two views' inputs.
            boxes: each view's crop, (B, 4) (top, left, height, width) in fractions of the sample's extent
                (:class:`~skysense.data.transforms.RandomResizedCrop` records them); None when the views share
                their geometry.
            local_views: HR-only local crops of the same samples (DINO's multi-crop), each (B, C, h, w) with h, w
                smaller than the global views'. Only the student sees them; each is contrasted at the image level
                with the teacher's HR features of both global views.
        """
        config = self.config
        if boxes is not None and torch.equal(boxes[0], boxes[1]):
            boxes = None  # the same crop: locations already correspond
        joined = join_inputs(views) if config.join_views else None
        student_out = self._encode(self.student["backbone"], views, joined)
        with torch.no_grad():
            teacher_out = self._encode(self.teacher["backbone"], views, joined)
        terms: dict[str, list[torch.Tensor]] = {}
        monitors: dict[str, torch.Tensor] = {}
        if self.training:
            self._accumulate_geo_prototypes(teacher_out[0], views[0])
        student_tokens = [self.source_tokens(out, view) for out, view in zip(student_out, views, strict=True)]
        teacher_tokens = [self.source_tokens(out, view) for out, view in zip(teacher_out, views, strict=True)]
        for s_index, t_index in ((0, 1), (1, 0)):
            student, teacher = student_tokens[s_index], teacher_tokens[t_index]
            for source, (s_tokens, valid) in student.items():
                t_tokens, t_valid = teacher[source]
                both = valid & t_valid  # (B, T): frames present in both views
                if not both.any():
                    continue
                inside = None
                if boxes is not None:
                    grid = self._grid(student_out[s_index], source)
                    t_tokens, inside = align_to_view(t_tokens, grid, boxes[s_index], boxes[t_index])
                self._multi_granularity(source, s_tokens, t_tokens, both, terms, inside)
            if config.cross_modal_weight > 0:
                self._cross_modal(student, terms)
        if local_views and config.image_weight > 0 and all("hr" in tokens for tokens in teacher_tokens):
            self._local_crops(local_views, teacher_tokens, terms)
        if config.koleo_weight > 0:
            for tokens in student_tokens:
                for source, (s_tokens, valid) in tokens.items():
                    present = valid.any(dim=1)
                    if int(present.sum()) > 1:
                        self._add(terms, f"koleo/{source}", koleo_loss(self._pool(s_tokens, valid)[present]))
        weights = {
            "pixel": config.pixel_weight,
            "object": config.object_weight,
            "image": config.image_weight,
            "cross_modal": config.cross_modal_weight,
            "koleo": config.koleo_weight,
        }
        means = {name: torch.stack(values).mean() for name, values in terms.items()}
        loss = torch.zeros((), device=next(self.parameters()).device)
        for name, value in means.items():
            loss = loss + weights[name.split("/")[0]] * value
        # collapse monitor: std over the batch of the normalised image-level student embedding, per dim (≈ 1/√C
        # when healthy, → 0 at collapse)
        for source, (tokens, valid) in student_tokens[0].items():
            pooled = F.normalize(self._pool(tokens, valid).float(), dim=-1)
            if pooled.shape[0] > 1:
                monitors[f"std/{source}"] = pooled.detach().std(dim=0).mean()
        return {"loss": loss, **means, **monitors}

    def _local_crops(
        self,
        local_views: tuple[SkySenseInput, ...],
        teacher_tokens: list[dict[str, tuple[torch.Tensor, torch.Tensor]]],
        terms: dict,
    ) -> None:
        """Image-level HR contrast of every local crop (student) with both global views (teacher), as in DINO's
        multi-crop: local-to-global correspondence at a fraction of a global view's cost. The teacher's targets
        are the ones the global views' image level already counted in the centre, so they do not move it again."""
        joined = join_inputs(local_views)
        outputs = self._encode(self.student["backbone"], local_views, joined)
        with torch.no_grad():
            targets = []
            for tokens in teacher_tokens:
                t_tokens, t_valid = tokens["hr"]
                logits = self.teacher["heads"]["hr_image"](self._pool(t_tokens, t_valid))
                if self.config.contrast == "dino":
                    logits = self.dino["hr_image"].teacher_probabilities(logits, update_center=False)
                targets.append((logits, t_valid.any(dim=1)))
        for out, view in zip(outputs, local_views, strict=True):
            s_tokens, s_valid = self.source_tokens(out, view)["hr"]
            student_logits = self.student["heads"]["hr_image"](self._pool(s_tokens, s_valid))
            for target, t_valid in targets:
                both = s_valid.any(dim=1) & t_valid
                if not both.any():
                    continue
                if self.config.contrast == "dino":
                    loss = self.dino["hr_image"](student_logits[both], target[both])
                else:
                    loss = self.infonce(student_logits[both], target[both])
                self._add(terms, "image/hr", loss)

    @staticmethod
    def _encode(
        backbone: nn.Module, views: tuple[SkySenseInput, ...], joined: SkySenseInput | None
    ) -> list[SkySenseOutput]:
        """Each view's backbone output: from one call on the joined views when given, else one call per view."""
        if joined is None:
            return [backbone(view, use_geo=view.lat is not None) for view in views]
        out = backbone(joined, use_geo=joined.lat is not None)
        return split_output(out, [view.batch_size for view in views])

    @staticmethod
    def _grid(out: SkySenseOutput, source: str) -> tuple[int, int]:
        """(h, w) of a source's token grid."""
        if source == "hr":
            return tuple(out.hr_features[-1].shape[-2:])
        if source == "fused":
            return tuple(out.features.shape[-2:])
        return tuple(getattr(out, f"{source}_features").shape[-2:])

    @staticmethod
    def _pool(tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mean over valid time steps and all locations: (B, T, L, C) → (B, C)."""
        weights = valid.to(tokens.dtype)[..., None, None]  # (B, T, 1, 1)
        return (tokens * weights).sum(dim=(1, 2)) / (weights.sum(dim=(1, 2)) * tokens.shape[2]).clamp_min(1e-6)

    @staticmethod
    def _add(terms: dict[str, list[torch.Tensor]], name: str, value: torch.Tensor) -> None:
        """Collect one value of a loss term (both view directions, several levels, are averaged later)."""
        terms.setdefault(name, []).append(value)

    def _multi_granularity(
        self,
        source: str,
        student: torch.Tensor,
        teacher: torch.Tensor,
        valid: torch.Tensor,
        terms: dict,
        inside: torch.Tensor | None = None,
    ) -> None:
        """Image, pixel and object levels for one source: tokens (B, T, L, C), frames valid in both views (B, T),
        and (B, L) the student locations that the teacher's view covers (None: all)."""
        config = self.config
        batch, steps, locations, _ = student.shape
        if config.image_weight > 0:
            self._add(
                terms,
                f"image/{source}",
                self._contrast(f"{source}_image", self._pool(student, valid), self._pool(teacher, valid)),
            )
        if config.pixel_weight <= 0 and config.object_weight <= 0:
            return
        frames = valid.flatten()  # (B·T,)
        s_frames = rearrange(student, "b t l c -> (b t) l c")[frames]  # (M, L, C)
        t_frames = rearrange(teacher, "b t l c -> (b t) l c")[frames]
        if inside is None:
            inside = torch.ones(batch, locations, dtype=torch.bool, device=student.device)
        covered = inside[:, None].expand(batch, steps, locations).flatten(0, 1)[frames]  # (M, L)
        if config.pixel_weight > 0:
            count = min(config.max_locations, locations)
            pick = torch.randperm(locations, device=student.device)[:count]
            keep = covered[:, pick]  # (M, P)
            if keep.sum() > 1:
                self._add(
                    terms,
                    f"pixel/{source}",
                    self._contrast(f"{source}_dense", s_frames[:, pick][keep], t_frames[:, pick][keep]),
                )
        if config.object_weight > 0 and locations > 1:
            assignments = cluster_assignments(t_frames, config.num_objects)  # (M, L, K), from the teacher
            assignments = assignments * covered[..., None]  # objects are pooled over covered locations only
            s_objects = pool_objects(s_frames, assignments.to(s_frames.dtype))  # (M, K, C)
            t_objects = pool_objects(t_frames, assignments.to(t_frames.dtype))
            present = assignments.sum(dim=1) >= 0.5  # (M, K): at least half a location's worth of covered mass
            if present.sum() > 1:
                self._add(
                    terms,
                    f"object/{source}",
                    self._contrast(f"{source}_dense", s_objects[present], t_objects[present]),
                )

    def _cross_modal(self, tokens: dict[str, tuple[torch.Tensor, torch.Tensor]], terms: dict) -> None:
        """InfoNCE between co-located features of two modalities (time series averaged over their valid frames)."""
        per_location = {}
        for source in ("hr", "s2", "s1"):
            if source in tokens:
                t, valid = tokens[source]
                weights = valid.to(t.dtype)[..., None, None]
                per_location[source] = ((t * weights).sum(1) / weights.sum(1).clamp_min(1e-6), valid.any(dim=1))
        names = sorted(per_location)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                (a, a_valid), (b, b_valid) = per_location[first], per_location[second]
                both = a_valid & b_valid  # (B,)
                if not both.any():
                    continue
                locations = a.shape[1]
                pick = torch.randperm(locations, device=a.device)[: min(self.config.max_locations, locations)]
                queries, keys = a[both][:, pick].flatten(0, 1), b[both][:, pick].flatten(0, 1)
                if queries.shape[0] > 1:
                    self._add(terms, f"cross_modal/{first}-{second}", self.alignment(queries, keys))

    # ------------------------------------------------------------------------------------------------------------
    def teacher_momentum(self, progress: float) -> float:
        """Cosine schedule from ``teacher_momentum_start`` to ``_end`` over training progress in [0, 1]."""
        start, end = self.config.teacher_momentum_start, self.config.teacher_momentum_end
        return end - (end - start) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """Teacher ← momentum · teacher + (1 − momentum) · student (parameters); buffers copied, but for the
        prototype bank and (``teacher_batchnorm="own"``) the teacher's BatchNorm statistics."""
        for module in self.modules():  # FSDP2: every unit back to its shard, so that student and teacher shards pair
            if callable(getattr(module, "reshard", None)):
                module.reshard()
        student_params = [_local(p) for p in self.student.parameters()]
        teacher_params = [_local(p) for p in self.teacher.parameters()]
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, [p.detach() for p in student_params], alpha=1 - momentum)
        for (name, s_buffer), (_, t_buffer) in zip(
            self.student.named_buffers(), self.teacher.named_buffers(), strict=True
        ):
            if name not in self._teacher_own_buffers:
                t_buffer.copy_(s_buffer)

    @torch.no_grad()
    def _accumulate_geo_prototypes(self, teacher_out: SkySenseOutput, view: SkySenseInput) -> None:
        """Gradient-free prototype learning on the teacher's fused features: this forward's assignment statistics,
        added to the step's (the bank moves in :meth:`finish_step`)."""
        teacher = self.teacher["backbone"]
        if teacher.geo is None or teacher_out.geo_query is None or self.config.prototype_momentum >= 1:
            return
        regions = teacher.geo.regions(view.lat, view.lon)
        # the queries come from the teacher's forward (under FSDP its parameters are only gathered there)
        self.prototype_pending += prototype_statistics(teacher.geo.bank, teacher_out.geo_query, regions)

    def teacher_temperature(self, progress: float) -> float:
        """τ_t at training progress in [0, 1]: linear warm-up from ``teacher_temperature_start`` over the first
        ``teacher_temperature_warmup`` of training, then ``teacher_temperature``."""
        config = self.config
        if config.teacher_temperature_warmup <= 0:
            return config.teacher_temperature
        ramp = min(max(progress, 0.0) / config.teacher_temperature_warmup, 1.0)
        return config.teacher_temperature_start + ramp * (config.teacher_temperature - config.teacher_temperature_start)

    def start_step(self, progress: float) -> float:
        """Set the teacher temperature of the step at training progress in [0, 1] (a function of the step alone, so
        a resumed run continues with the same schedule); returns it."""
        temperature = self.teacher_temperature(progress)
        for loss in self.dino.values():
            loss.teacher_temperature = temperature
        return temperature

    @torch.no_grad()
    def finish_step(self) -> dict[str, torch.Tensor]:
        """End an optimiser step: move every DINO centre and the prototype bank with the statistics that the step's
        forwards accumulated, summed over processes in one all-reduce (every process calls this once per step,
        whatever its batches held).

        Returns:
            Monitors to log ("prototypes/usage_entropy", "prototypes/regions_updated") when the bank moved.
        """
        parts = [loss.pending for loss in self.dino.values()]  # (1, K + 1) each, in the same order everywhere
        if self.prototype_pending is not None:
            parts.append(self.prototype_pending.flatten()[None])
        flat = all_reduce_sum(torch.cat([part.flatten() for part in parts]))
        offset = 0
        for loss in self.dino.values():
            size = loss.pending.numel()
            loss.apply_center_update(flat[offset : offset + size].view_as(loss.pending))
            offset += size
        monitors: dict[str, torch.Tensor] = {}
        if self.prototype_pending is not None:
            statistics = flat[offset:].view_as(self.prototype_pending)
            self.prototype_pending.zero_()
            if bool(statistics[..., -2].sum() > 0):  # the same decision everywhere: the sums are global
                teacher, student = self.teacher["backbone"].geo, self.student["backbone"].geo
                stats = apply_prototype_update(teacher.bank, statistics, self.config.prototype_momentum)
                student.bank.copy_(teacher.bank)
                monitors.update({f"prototypes/{k}": v for k, v in stats.items()})
        return monitors


def join_inputs(views: tuple[SkySenseInput, ...]) -> SkySenseInput | None:
    """The views concatenated along the batch, or None when they hold different fields or shapes.

    Every layer of the backbone works per sample, so one call on the joined views computes what one call per view
    does; stochastic depth draws its per-sample masks in one draw instead of two. The one exception is the
    BatchNorm of a convolutional HR stem (``stem="conv"``) in training mode, whose batch statistics then cover
    both views, as in DINO's multi-crop forward.
    """
    fields: dict[str, torch.Tensor | None] = {}
    for item in dataclasses.fields(SkySenseInput):
        values = [getattr(view, item.name) for view in views]
        if all(value is None for value in values):
            fields[item.name] = None
            continue
        if any(value is None for value in values) or len({tuple(v.shape[1:]) for v in values}) > 1:
            return None
        fields[item.name] = torch.cat(values)
    return SkySenseInput(**fields)


def split_output(out: SkySenseOutput, sizes: list[int]) -> list[SkySenseOutput]:
    """Undo :func:`join_inputs` on a backbone output: one :class:`SkySenseOutput` per view of ``sizes`` samples."""
    parts: list[dict] = [{} for _ in sizes]
    for item in dataclasses.fields(SkySenseOutput):
        value = getattr(out, item.name)
        if value is None:
            continue
        if isinstance(value, list):  # the HR pyramid
            pieces = [level.split(sizes) for level in value]
            for index, part in enumerate(parts):
                part[item.name] = [level[index] for level in pieces]
        else:
            for part, piece in zip(parts, value.split(sizes), strict=True):
                part[item.name] = piece
    return [SkySenseOutput(**part) for part in parts]


def align_to_view(
    tokens: torch.Tensor, grid: tuple[int, int], box: torch.Tensor, other_box: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample another view's tokens onto this view's grid.

    Args:
        tokens: (B, T, h·w, C) tokens of the other view.
        grid: (h, w) of both views' token grids.
        box, other_box: (B, 4) crops (top, left, height, width) of this view and of the other, in fractions of the
            sample's extent.

    Returns:
        (B, T, h·w, C) the other view's features at this view's location centres (bilinear), and (B, h·w) bool,
        True where that centre lies inside the other view.
    """
    batch, steps = tokens.shape[:2]
    height, width = grid
    box, other_box = box.float(), other_box.float()
    ys = (torch.arange(height, device=tokens.device) + 0.5) / height
    xs = (torch.arange(width, device=tokens.device) + 0.5) / width
    # this view's location centres → the sample's extent → the other view's fractions
    y = (box[:, 0, None] + ys * box[:, 2, None] - other_box[:, 0, None]) / other_box[:, 2, None]  # (B, h)
    x = (box[:, 1, None] + xs * box[:, 3, None] - other_box[:, 1, None]) / other_box[:, 3, None]  # (B, w)
    sample_grid = torch.stack(
        [(2 * x - 1)[:, None, :].expand(batch, height, width), (2 * y - 1)[:, :, None].expand(batch, height, width)],
        dim=-1,
    )  # (B, h, w, 2) as grid_sample wants: (x, y) in [-1, 1]
    inside = ((y >= 0) & (y <= 1))[:, :, None] & ((x >= 0) & (x <= 1))[:, None, :]  # (B, h, w)
    maps = rearrange(tokens.float(), "b t (h w) c -> (b t) c h w", h=height)
    resampled = F.grid_sample(
        maps, sample_grid.repeat_interleave(steps, dim=0), mode="bilinear", padding_mode="border", align_corners=False
    )
    resampled = rearrange(resampled, "(b t) c h w -> b t (h w) c", b=batch).to(tokens.dtype)
    return resampled, inside.flatten(1)


def _local(parameter: torch.Tensor) -> torch.Tensor:
    """This process's shard of an FSDP2 (DTensor) parameter — student and teacher shard alike, so shards pair up —
    or the parameter itself."""
    to_local = getattr(parameter, "to_local", None)
    return to_local() if callable(to_local) else parameter
