"""Lightning module for SkySense pretraining: wraps :class:`~skysense.pretrain.meta_arch.SSLMetaArch`.

AdamW with linear warm-up then cosine decay; the EMA teacher is updated after every optimiser step with the cosine
momentum schedule. Precision (``bf16-mixed``), strategy and activation checkpointing are Trainer or constructor
options, not code paths:

- DDP: ``--trainer.strategy ddp_find_unused_parameters_true`` (a step may skip some modalities' modules).
- FSDP: ``--trainer.strategy lightning.pytorch.strategies.ModelParallelStrategy`` — FSDP2 (``fully_shard``), which
  :meth:`PretrainTask.configure_model` applies per transformer block, per backbone and per projection head, for the
  student and the teacher alike (so their shards pair up for the EMA). Lightning's FSDP1 ``FSDPStrategy`` is not
  supported: it flattens the student and teacher into shared flat parameters and needs a GPU.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

from skysense.containers import Batch
from skysense.models.compiling import compile_blocks
from skysense.models.registry import get_config
from skysense.models.skysense import SkySense
from skysense.pretrain.meta_arch import PretrainConfig, SSLMetaArch
from skysense.pretrain.sharding import shard_meta_arch
from skysense.tasks.optim import adamw_with_schedule, initialize_adam_state, parameter_groups


class PretrainTask(pl.LightningModule):
    """Self-supervised pretraining of a preset.

    Args:
        preset: model preset name ("tiny", "small", "base", "paper").
        model_overrides: options for :func:`skysense.create_model` (e.g. ``{"s1": None}``).
        objectives: :class:`PretrainConfig` fields (loss weights, temperatures, ...).
        lr: peak learning rate.
        head_lr_scale: the projection heads' learning rate as a multiple of ``lr`` (they start random, under an
            encoder whose random features are worth keeping; 1: one rate for all).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        grad_checkpointing: activation checkpointing in every transformer.
        compile_blocks: ``torch.compile`` every transformer block (:func:`~skysense.models.compiling.compile_blocks`;
            for GPUs, where a step at a small per-device batch is bound by kernel launches).
        fused_optimizer: AdamW's fused kernels (one launch per step and parameter group, and no per-tensor
            temporaries: the foreach step of the paper preset holds a float32 copy of its 2 B student parameters);
            None: fused where the parameters live on a GPU.
        fsdp_param_dtype: under FSDP2, the dtype the gathered parameters compute with ("bfloat16" or "float32";
            :func:`~skysense.pretrain.sharding.shard_meta_arch`); "auto": bfloat16 when the Trainer's precision is
            ``bf16-mixed`` (torchtitan's default), else float32. Shards, optimiser state and the EMA teacher stay
            float32 either way.
    """

    def __init__(
        self,
        preset: str = "tiny",
        model_overrides: dict[str, Any] | None = None,
        objectives: dict[str, Any] | None = None,
        lr: float = 5e-4,
        head_lr_scale: float = 1.0,
        weight_decay: float = 0.04,
        warmup_steps: int = 10,
        grad_checkpointing: bool = False,
        compile_blocks: bool = False,
        fused_optimizer: bool | None = None,
        fsdp_param_dtype: str = "auto",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        model_config = get_config(preset, **(model_overrides or {}))
        backbone = SkySense(model_config)
        backbone.set_grad_checkpointing(grad_checkpointing)
        self.meta = SSLMetaArch(backbone, model_config.projection, PretrainConfig(**(objectives or {})))
        if not head_lr_scale > 0:
            raise ValueError(f"head_lr_scale must be positive, got {head_lr_scale!r}")
        if fsdp_param_dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError(f"fsdp_param_dtype: 'auto', 'bfloat16' or 'float32', got {fsdp_param_dtype!r}")
        self._sharded = False

    @property
    def backbone(self) -> torch.nn.Module:
        """The student encoder (what downstream tasks load)."""
        return self.meta.student["backbone"]

    def configure_model(self) -> None:
        """FSDP2 sharding when the Trainer's strategy gives a device mesh (``ModelParallelStrategy``; units: see
        :func:`~skysense.pretrain.sharding.shard_meta_arch`), and the blocks' compilation when asked for."""
        if self.hparams.compile_blocks:
            compile_blocks(self.meta)  # on the instances' forward: FSDP2's hooks stay outside the compiled code
        mesh = self.device_mesh
        if mesh is None or self._sharded:
            return
        if "tensor_parallel" in mesh.mesh_dim_names and mesh["tensor_parallel"].size() > 1:
            raise ValueError("pretraining shards data-parallel only: use ModelParallelStrategy(tensor_parallel_size=1)")
        data_parallel = mesh["data_parallel"] if "data_parallel" in mesh.mesh_dim_names else mesh
        shard_meta_arch(self.meta, data_parallel, param_dtype=self._fsdp_param_dtype())
        self._sharded = True

    def _fsdp_param_dtype(self) -> torch.dtype | None:
        choice = self.hparams.fsdp_param_dtype
        precision = str(self.trainer.precision) if self._trainer is not None else None
        if choice == "auto":
            choice = "bfloat16" if precision == "bf16-mixed" else "float32"
        if choice == "bfloat16" and precision not in (None, "bf16-mixed"):
            raise ValueError(
                f"fsdp_param_dtype 'bfloat16' needs --trainer.precision bf16-mixed (got {precision}): "
                "the units' inputs stay float32 and only autocast casts them"
            )
        return torch.bfloat16 if choice == "bfloat16" else None

    def training_step(
        self, batch: tuple[Batch, Batch] | dict[str, tuple[Batch, Batch] | None], batch_index: int
    ) -> torch.Tensor:
        """One step on a pair of view batches (then any local-crop batches), or on ``{source: views}`` (the sum of the
        sources' losses)."""
        pairs = batch if isinstance(batch, dict) else {"": batch}
        self.log("train/teacher_temperature", self.meta.start_step(self._progress()), batch_size=1)
        total = torch.zeros((), device=self.device)
        for source, pair in pairs.items():
            if pair is None:
                continue
            first, second, *local = pair
            losses = self.meta(
                (first.inputs, second.inputs), crop_boxes(first, second), tuple(view.inputs for view in local)
            )
            prefix = f"train/{source}/" if source else "train/"
            self.log_dict({prefix + k: v.detach().float() for k, v in losses.items()}, batch_size=len(first))
            total = total + losses["loss"]
        self.log("loss", total.detach(), prog_bar=True, batch_size=1)
        return total

    def _progress(self) -> float:
        """Training progress in [0, 1]: optimiser steps taken / steps planned (0 without a planned length)."""
        total = self.trainer.estimated_stepping_batches
        return min(self.global_step / max(total, 1), 1.0) if math.isfinite(total) else 0.0

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the step's centre and prototype updates and the EMA teacher step — here rather
        than in ``on_train_batch_end``, which runs after the checkpoint callbacks: a checkpoint must hold the student
        and teacher of the same step."""
        super().optimizer_step(*args, **kwargs)
        monitors = self.meta.finish_step()  # DINO centres and prototype bank: once per step, in one collective
        momentum = self.meta.teacher_momentum(self._progress())
        self.meta.update_teacher(momentum)
        self.log("train/teacher_momentum", momentum, batch_size=1)
        self.log_dict({f"train/{k}": v.float() for k, v in monitors.items()}, batch_size=1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the global RNG states (stochastic depth, location sampling, cluster initialisation draw from them)
        for an exact resume — every process's own: they drift apart with the data (a step draws only for the
        modalities and frames its batch has), and a distributed checkpoint's metadata is written by rank 0 alone."""
        states = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            per_rank: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(per_rank, states)  # every rank runs this hook
        else:
            per_rank = [states]
        checkpoint["rng_states"] = {"per_rank": per_rank}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states is None:
            return
        per_rank = states.get("per_rank", [states])  # checkpoints before issue 15 held one process's states
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if len(per_rank) != (torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1):
            rank_zero_warn(
                f"the checkpoint holds the RNG states of {len(per_rank)} processes, this run has a different number: "
                "the resumed run draws different random numbers (stochastic depth, location sampling)"
            )
            rank = 0
        states = per_rank[rank]
        torch.set_rng_state(states["torch"])
        cuda = states.get("cuda")
        if isinstance(cuda, list):  # before issue 15: every device's state
            cuda = cuda[torch.cuda.current_device()] if torch.cuda.is_available() and len(cuda) > 0 else None
        if cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda)

    def configure_optimizers(self) -> dict[str, Any]:
        head_scale = self.hparams.get("head_lr_scale", 1.0)  # absent from checkpoints of before the option
        groups = parameter_groups(
            self.meta.student, self.hparams.weight_decay, backbone_prefix="", prefix_scales={"heads.": head_scale}
        )
        fused = self.hparams.fused_optimizer
        if fused is None:
            fused = next(self.meta.student.parameters()).device.type == "cuda"
        optimization = adamw_with_schedule(
            groups, self.hparams.lr, self.trainer.estimated_stepping_batches, self.hparams.warmup_steps, fused=fused
        )
        # every parameter's state exists from the start: a distributed checkpoint then resumes (see the function)
        initialize_adam_state(optimization["optimizer"])
        return optimization


def crop_boxes(first: Batch, second: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each view's crop box (B, 4) from the samples' ``meta["crop_box"]``, or None when the views were not cropped."""
    if not any("crop_box" in m for m in first.meta + second.meta):
        return None
    full = (0.0, 0.0, 1.0, 1.0)
    device = next(t.device for t in vars(first.inputs).values() if isinstance(t, torch.Tensor))
    return tuple(
        torch.tensor([m.get("crop_box", full) for m in batch.meta], dtype=torch.float32, device=device)
        for batch in (first, second)
    )
