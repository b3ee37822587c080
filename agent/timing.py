"""Sample rate and block size, which always travel together."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The clocking of one audio stream: samples per second and samples per block."""

    sample_rate_hz: int
    block_size: int

    def __post_init__(self) -> None:
        if self.sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {self.sample_rate_hz}")
        if self.block_size <= 0:
            raise ValueError(f"block_size must be positive, got {self.block_size}")

    @property
    def block_period_s(self) -> float:
        return self.block_size / self.sample_rate_hz

    @property
    def block_period_us(self) -> float:
        return 1e6 * self.block_size / self.sample_rate_hz

    def samples(self, seconds: float) -> int:
        """Whole samples in `seconds`, rounded to the nearest sample."""
        return round(seconds * self.sample_rate_hz)

    def blocks(self, seconds: float) -> int:
        """Whole blocks needed to cover `seconds` (rounded up)."""
        return -(-self.samples(seconds) // self.block_size)
