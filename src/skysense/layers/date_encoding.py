"""Day-of-year date encoding for the temporal fusion (SkySense Sec. 3.1, "date-specific temporal positional
encoding"): a learned table of 365 vectors, one per calendar day, added to every dated token.

Leap years: the table has 365 entries and is indexed by calendar day, not by ordinal day, so that the same
calendar date always gets the same vector (1 March is index 59 in every year). 29 February shares 28 February's
entry (index 58). This keeps seasonal phase aligned across years, which is what the encoding is for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skysense.containers import NO_DATE, NUM_DAYS


class DayOfYearEncoding(nn.Module):
    """Learned (1, 365, dim) table; ``forward`` adds the row of each token's day to it.

    The table is named ``weight`` and stored as (1, 365, dim), the layout of the official ``ctpe`` tensor.
    """

    def __init__(self, dim: int, num_days: int = NUM_DAYS) -> None:
        super().__init__()
        self.num_days = num_days
        self.weight = nn.Parameter(torch.zeros(1, num_days, dim))
        if not self.weight.is_meta:
            nn.init.trunc_normal_(self.weight, std=0.02)

    def rows(self, day_of_year: torch.Tensor) -> torch.Tensor:
        """The encoding of each day: (..., L) int64 in [0, num_days) or ``NO_DATE`` → (..., L, dim), zero rows for
        ``NO_DATE``. Callers with one row of days for many tokens add it with broadcasting (one pass over the tokens).

        Raises:
            TypeError: a day tensor that is not integer. ValueError: a day out of range, naming it.
        """
        if day_of_year.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"day_of_year must be an integer tensor, got {day_of_year.dtype}")
        bad = (day_of_year < NO_DATE) | (day_of_year >= self.num_days)
        if bad.any():
            raise ValueError(
                f"day_of_year values must lie in [0, {self.num_days}) or be {NO_DATE} (no date); "
                f"found {day_of_year[bad].unique().tolist()}"
            )
        dated = (day_of_year >= 0).unsqueeze(-1)
        # F.embedding, not weight[0][days]: indexing's backward adds repeated days with atomics across threads on a
        # CPU, so its sums vary in the last bits from run to run; the embedding's backward sums in a fixed order
        encoding = F.embedding(day_of_year.clamp(min=0), self.weight[0])  # (..., L, dim)
        return encoding * dated.to(encoding.dtype)

    def forward(self, tokens: torch.Tensor, day_of_year: torch.Tensor) -> torch.Tensor:
        """Add the date encoding.

        Args:
            tokens: (..., L, dim).
            day_of_year: (..., L) int64 in [0, num_days), or ``NO_DATE`` (-1) for tokens without a date.

        Returns:
            (..., L, dim): tokens + table[day]; tokens whose day is ``NO_DATE`` are returned unchanged.
        """
        return tokens + self.rows(day_of_year)
