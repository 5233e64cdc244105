import datetime as dt

import numpy as np
import pytest
import torch

from skysense.containers import NO_DATE, day_of_year_index
from skysense.layers.date_encoding import DayOfYearEncoding


def test_calendar_day_index_and_leap_years() -> None:
    index = day_of_year_index(["2019-01-01", "2019-12-31", "2020-12-31", "2020-02-28", "2020-02-29", "2020-03-01"])
    assert index.tolist() == [0, 364, 364, 58, 58, 59]
    # the same calendar date maps to the same entry in leap and common years
    assert day_of_year_index([dt.date(2019, 9, 17)]) == day_of_year_index([np.datetime64("2020-09-17")])
    assert day_of_year_index([dt.datetime(2021, 3, 1, 10, 30)]).item() == 59


def test_unparseable_date_is_named() -> None:
    with pytest.raises(ValueError, match="17/09/2019"):
        day_of_year_index(["17/09/2019"])
    with pytest.raises(ValueError, match="NaT"):
        day_of_year_index([np.datetime64("NaT")])


def test_encoding_adds_row_and_skips_undated() -> None:
    enc = DayOfYearEncoding(8)
    tokens = torch.zeros(2, 3, 8)
    days = torch.tensor([[0, 364, NO_DATE], [10, 10, 10]])
    out = enc(tokens, days)
    assert torch.equal(out[0, 0], enc.weight[0, 0])
    assert torch.equal(out[0, 1], enc.weight[0, 364])
    assert torch.equal(out[0, 2], torch.zeros(8))
    with pytest.raises(ValueError, match="365"):
        enc(tokens, torch.tensor([[365, 0, 0], [0, 0, 0]]))


def test_gradient_of_repeated_days_is_bit_reproducible() -> None:
    """Many tokens of one day (a batch of one date) send their gradients to one row: summed in a fixed order, so two
    identical steps give identical gradients (indexing's backward adds them with CPU atomics across threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        encoding = DayOfYearEncoding(256)
        days = torch.tensor([10, 200]).repeat(512)[:, None]  # (1024, 1): two days, alternating
        upstream = torch.randn(1024, 1, 256, generator=torch.Generator().manual_seed(0))
        gradients = []
        for _ in range(8):
            encoding.zero_grad()
            (encoding.rows(days) * upstream).sum().backward()
            gradients.append(encoding.weight.grad.clone())
        assert all(torch.equal(gradients[0], other) for other in gradients[1:])
        assert torch.allclose(gradients[0][0, 10], upstream[0::2, 0].sum(dim=0), atol=1e-4)
    finally:
        torch.set_num_threads(threads)
