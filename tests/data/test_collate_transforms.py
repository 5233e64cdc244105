"""Samples, collate (time padding with masks, refusal of NaN) and transforms (co-registered geometry)."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from skysense import create_model
from skysense.containers import Sample, TimeSeries
from skysense.data.collate import collate
from skysense.data.sensors import HR_RGB, S1_GRD, S2_L2A
from skysense.data.transforms import (
    Compose,
    FillInvalid,
    JitterDates,
    Normalize,
    RandomCrop,
    RandomFlipRotate,
    RandomSaturation,
    SampleFrames,
)
from tests.conftest import shared_path


def _series(steps: int, channels: int, size: int = 8, start: str = "2021-01-01", scale: float = 1000.0) -> TimeSeries:
    first = dt.date.fromisoformat(start)
    return TimeSeries(
        values=torch.rand(steps, channels, size, size) * scale,
        dates=[first + dt.timedelta(days=12 * i) for i in range(steps)],
        valid=torch.ones(steps, size, size, dtype=torch.bool),
    )


def _sample(s2_steps: int = 3, s1_steps: int = 2, hr: bool = True, **kwargs) -> Sample:
    return Sample(
        hr=torch.rand(3, 256, 256) * 255 if hr else None,
        s2=_series(s2_steps, 10) if s2_steps else None,
        s1=TimeSeries(
            -torch.rand(s1_steps, 2, 8, 8) * 20,
            [dt.date(2021, 2, 1 + i) for i in range(s1_steps)],
            torch.ones(s1_steps, 8, 8, dtype=torch.bool),
        )
        if s1_steps
        else None,
        lat=45.0,
        lon=7.0,
        meta={"source": kwargs.pop("source", "synthetic")},
        **kwargs,
    )


def test_collate_pads_time_and_masks_missing_modalities() -> None:
    batch = collate([_sample(3, 2, target=1), _sample(1, 0, hr=False, target=4)])
    x = batch.inputs
    assert x.s2.shape == (2, 3, 10, 8, 8) and x.s1.shape == (2, 2, 2, 8, 8)
    assert x.s2_valid.tolist() == [[True, True, True], [True, False, False]]
    assert x.s1_valid.tolist() == [[True, True], [False, False]]
    assert x.hr_valid.tolist() == [True, False]
    assert x.s2_day_of_year[0].tolist() == [0, 12, 24] and x.s2_day_of_year[1, 1:].tolist() == [-1, -1]
    assert batch.target.tolist() == [1, 4]
    assert batch.s2_pixel_valid.shape == (2, 3, 8, 8) and not batch.s2_pixel_valid[1, 1:].any()


def test_collated_batch_runs_through_the_model() -> None:
    normalize = Normalize(hr=HR_RGB, s2=S2_L2A, s1=S1_GRD)
    batch = collate([normalize(_sample(3, 2)), normalize(_sample(2, 1, hr=False))])
    model = create_model("tiny").eval()
    with torch.no_grad():
        out = model(batch.inputs)
    assert out.features.shape == (2, 128, 8, 8) and torch.isfinite(out.features).all()


def test_nan_is_refused_until_filled_explicitly() -> None:
    sample = _sample()
    sample.s2.values[1, 0, 2, 2] = float("nan")
    sample.s2.valid[1, 2, 2] = False
    with pytest.raises(ValueError, match="s2 of synthetic holds NaN"):
        collate([sample])
    filled = FillInvalid(0.0)(Normalize(s2=S2_L2A)(sample))
    batch = collate([filled])
    assert batch.inputs.s2[0, 1, 0, 2, 2] == 0.0 and not batch.s2_pixel_valid[0, 1, 2, 2]


def test_frame_without_valid_pixels_is_masked() -> None:
    sample = _sample()
    sample.s2.values[0] = float("nan")
    sample.s2.valid[0] = False
    batch = collate([sample])
    assert batch.inputs.s2_valid.tolist() == [[False, True, True]]


def test_wrong_units_are_refused_by_normalize() -> None:
    sample = _sample()
    sample.s1.values[:] = 0.05  # linear backscatter, not dB — within range, but S2 DN as S1 is not:
    bad = Sample(s1=_series(2, 2, scale=3000.0), meta={"source": "s2-as-s1.tif"})
    with pytest.raises(ValueError, match="s2-as-s1.tif"):
        Normalize(s1=S1_GRD)(bad)


def test_sample_frames_and_jitter_keep_date_order() -> None:
    generator = torch.Generator().manual_seed(0)
    sample = _sample(30, 15)
    out = SampleFrames(s2=20, s1=10, generator=generator)(sample)
    assert len(out.s2) == 20 and len(out.s1) == 10
    assert out.s2.dates == sorted(out.s2.dates)
    even = SampleFrames(s2=4, s1=None, mode="even")(sample)
    assert [d.isoformat() for d in even.s2.dates] == [
        "2021-01-01",
        "2021-05-01",
        "2021-08-17",
        "2021-12-15",
    ]  # frames 0, 10, 19, 29
    assert len(SampleFrames(mode="all")(sample).s2) == 30
    jittered = JitterDates(max_days=30, generator=generator)(sample)
    assert jittered.s2.dates == sorted(jittered.s2.dates)
    assert jittered.s2.dates != sample.s2.dates
    with pytest.raises(ValueError, match="sorted"):
        TimeSeries(torch.zeros(2, 1, 2, 2), [dt.date(2021, 2, 1), dt.date(2021, 1, 1)], torch.ones(2, 2, 2, dtype=bool))


def test_geometry_is_identical_across_modalities_and_targets() -> None:
    """HR pixel (32·y + dy, 32·x + dx) and Sentinel pixel (y, x) must stay aligned through flips, rotations, crops."""
    hr_index = torch.arange(8).repeat_interleave(32)  # Sentinel row of each HR row
    hr = (hr_index[:, None] * 8 + hr_index[None, :]).float().expand(3, -1, -1).clone()  # (3, 256, 256)
    grid = (torch.arange(8)[:, None] * 8 + torch.arange(8)[None, :]).float()  # (8, 8) = same id per location
    s2 = TimeSeries(
        grid.expand(2, 10, 8, 8).clone(),
        [dt.date(2021, 1, 1), dt.date(2021, 2, 1)],
        torch.ones(2, 8, 8, dtype=torch.bool),
    )
    sample = Sample(hr=hr, s2=s2, target=grid.clone(), meta={"source": "ids"})
    generator = torch.Generator().manual_seed(3)
    transform = Compose([RandomFlipRotate(generator=generator), RandomCrop(4, generator=generator)])
    for _ in range(8):
        out = transform(sample)
        assert out.s2.values.shape == (2, 10, 4, 4) and out.hr.shape == (3, 128, 128)
        pooled = out.hr[0].reshape(4, 32, 4, 32).amax(dim=(1, 3))
        assert torch.equal(pooled, out.hr[0].reshape(4, 32, 4, 32).amin(dim=(1, 3)))  # blocks stay whole
        assert torch.equal(pooled, out.s2.values[0, 0]) and torch.equal(out.target, out.s2.values[1, 3])


def test_boxes_follow_the_image() -> None:
    image = torch.zeros(3, 64, 64)
    image[:, 10:20, 40:60] = 1.0  # rows 10-19, columns 40-59
    sample = Sample(hr=image, target={"boxes": torch.tensor([[40.0, 10.0, 60.0, 20.0]]), "labels": torch.tensor([1])})
    generator = torch.Generator().manual_seed(0)
    for _ in range(8):
        out = RandomFlipRotate(generator=generator)(sample)
        x1, y1, x2, y2 = out.target["boxes"][0].long().tolist()
        inside = out.hr[0, y1:y2, x1:x2]
        assert inside.numel() == 200 and inside.all() and out.hr[0].sum() == 200


def test_change_pairs_move_together() -> None:
    before = torch.rand(3, 64, 64) * 255
    after = before.flip(-1).clone()
    sample = Sample(hr=before, hr_t2=after, target=torch.zeros(64, 64, dtype=torch.long))
    out = RandomFlipRotate(generator=torch.Generator().manual_seed(1))(Normalize(hr=HR_RGB)(sample))
    batch = collate([out, out])
    assert batch.hr_t2.shape == (2, 3, 64, 64)
    # whatever geometry was drawn, the pair keeps its relation (after = before mirrored left-right, up to rotation)
    restored = [torch.rot90(batch.hr_t2[0], k, (-2, -1)) for k in range(4)]
    assert any(torch.allclose(r, torch.rot90(batch.inputs.hr[0], k, (-2, -1)).flip(-1)) for k, r in enumerate(restored))
    with pytest.raises(ValueError, match="hr_t2"):
        collate([out, Sample(hr=before)])


def test_random_resized_crop_is_one_box_for_every_modality_and_records_it() -> None:
    from skysense.data.transforms import RandomResizedCrop

    # a horizontal ramp in both modalities, in units of the sample's width: co-registered by construction
    def ramp(size: int) -> torch.Tensor:
        return ((torch.arange(size) + 0.5) / size).expand(size, size)

    hr = ramp(256)[None].repeat(3, 1, 1)
    s2 = TimeSeries(ramp(8)[None, None].repeat(2, 10, 1, 1), [dt.date(2021, 1, 1), dt.date(2021, 2, 1)],
                    torch.ones(2, 8, 8, dtype=torch.bool))  # fmt: skip
    crop = RandomResizedCrop(scale=(0.2, 0.5), generator=torch.Generator().manual_seed(3))
    once = crop(Sample(hr=hr, s2=s2))
    top, left, height, width = once.meta["crop_box"]
    assert 0.2 - 1e-6 <= height * width <= 0.5 + 1e-6 and 0 <= left and left + width <= 1 + 1e-6
    assert once.hr.shape == hr.shape and once.s2.values.shape == s2.values.shape and once.s2.valid.all()
    # each output pixel centre reads the ramp where the box puts it
    for image, size in ((once.hr[0], 256), (once.s2.values[0, 0], 8)):
        expected = left + (torch.arange(size) + 0.5) / size * width
        torch.testing.assert_close(image[size // 2], expected, atol=1.5 / size * width + 1e-4, rtol=0)
    twice = crop(once)  # boxes compose in the original sample's fractions
    t2, l2, h2, w2 = twice.meta["crop_box"]
    assert top <= t2 and left <= l2 and t2 + h2 <= top + height + 1e-6 and l2 + w2 <= left + width + 1e-6
    with pytest.raises(ValueError, match="box targets"):
        crop(Sample(hr=hr, target={"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}))


def test_saturation_keeps_the_band_mean_and_grayscale_removes_colour() -> None:
    sample = _sample()
    mean = sample.hr.mean(dim=0)
    always = RandomSaturation(saturation=0.5, p=1.0, grayscale_p=0.0, generator=torch.Generator().manual_seed(0))
    changed = always(sample).hr
    assert not torch.equal(changed, sample.hr) and torch.allclose(changed.mean(dim=0), mean, atol=1e-4)
    gray = RandomSaturation(saturation=0.5, p=0.0, grayscale_p=1.0)(sample).hr
    assert torch.allclose(gray, mean.expand_as(gray), atol=1e-4)
    assert RandomSaturation(p=0.0, grayscale_p=0.0)(sample).hr is sample.hr
    assert RandomSaturation(grayscale_p=1.0)(_sample(hr=False)).hr is None


def test_local_crop_reads_the_box_it_records_and_keeps_only_hr() -> None:
    from skysense.data.transforms import LocalCrop

    hr = ((torch.arange(64) + 0.5) / 64).expand(64, 64)[None].repeat(3, 1, 1)  # a horizontal ramp
    s2 = TimeSeries(torch.zeros(1, 10, 4, 4), [dt.date(2021, 1, 1)], torch.ones(1, 4, 4, dtype=torch.bool))
    crop = LocalCrop(16, scale=(0.1, 0.2), generator=torch.Generator().manual_seed(0))
    out = crop(Sample(hr=hr, hr_valid=torch.ones(64, 64, dtype=torch.bool), s2=s2, lat=1.0, lon=2.0))
    top, left, height, width = out.meta["local_crop"]
    assert out.hr.shape == (3, 16, 16) and out.hr_valid.shape == (16, 16) and out.hr_valid.all()
    assert out.s2 is None and out.lat is None and 0.1 * 4096 * 0.8 <= height * width <= 0.2 * 4096 * 1.2
    torch.testing.assert_close(out.hr[0, 8, [0, -1]], torch.tensor([left + 0.5, left + width - 0.5]) / 64,
                               atol=1 / 64, rtol=0)  # fmt: skip
    with pytest.raises(ValueError, match="needs an HR image"):
        crop(Sample(s2=s2))


def test_pretraining_views_give_local_crops_of_real_eurosat_images() -> None:
    """The datamodule on real EuroSAT images: two 64² global views, then ``local_crops`` 32² HR-only views."""
    from skysense.pretrain.datamodule import PretrainDataModule

    root = str(shared_path("eurosat_rgb_dev"))
    source = {"dataset": "EuroSAT", "init_args": {"root": root, "split": "train"}, "max_samples": 4}
    module = PretrainDataModule({"eurosat": source}, batch_size=2, local_crops=3, local_crop_size=32)
    module.setup()
    module.train_dataloader()
    views = next(iter(module.loaders["eurosat"]))
    assert [tuple(view.inputs.hr.shape) for view in views] == [(2, 3, 64, 64)] * 2 + [(2, 3, 32, 32)] * 3
    assert all(view.inputs.s2 is None and view.inputs.lat is None for view in views[2:])
    assert not torch.allclose(views[2].inputs.hr, views[3].inputs.hr)
    assert views[2].inputs.hr.abs().mean() < 5  # normalised like the global views
