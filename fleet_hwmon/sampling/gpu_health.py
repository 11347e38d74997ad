"""GPU health as state: ok, degraded or lost, with a reason and a re-probe schedule (pure logic).

A GPU that falls off the bus answers every NVML call with ``GpuIsLost`` (or ``Unknown``); asking
it again every tick costs hundreds of failing calls and says nothing new. The gateway marks it
lost and re-probes it with exponential backoff (``base_s``, doubling up to ``max_s``); a probe
that reads it again brings it back to ``ok``. Signs of sick hardware on a GPU that still answers
(a new critical XID event, a rise of the uncorrectable ECC count, a page retirement waiting for
a reboot) mark it ``degraded``; that stays until the process restarts (the hardware is suspect).

Example::

    health = GpuHealth(base_s=5.0, max_s=300.0)
    health.lose("GpuIsLost", now_s=10.0)    # next probe at 15 s, then 25 s, 45 s, ...
    health.probe_due(12.0)                  # False: report it lost without calling NVML
"""

from __future__ import annotations

from dataclasses import dataclass

OK, DEGRADED, LOST = "ok", "degraded", "lost"


class GpuLost(Exception):
    """NVML says the GPU is gone (``reason``: ``"GpuIsLost"``, ``"Unknown"``, ``"vanished"``);
    raised inside one GPU's read and caught per GPU, so the others are still read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

# nvmlClocksThrottleReason* bits (nvml.h) by the name the sample uses.
THROTTLE_BITS: tuple[tuple[str, int], ...] = (
    ("thermal", 0x20 | 0x40),  # SwThermalSlowdown, HwThermalSlowdown
    ("power", 0x04 | 0x80),  # SwPowerCap, HwPowerBrakeSlowdown
    ("hw_slowdown", 0x08),  # HwSlowdown
)


def throttle_names(mask: int | None) -> str | None:
    """``"thermal,power"`` for a throttle-reason bit mask; ``""`` when none of those is active,
    ``None`` when the mask is unknown. Idle and application-clock reasons are not named: they are
    no sign of trouble."""
    if mask is None:
        return None
    return ",".join(name for name, bits in THROTTLE_BITS if int(mask) & bits)


@dataclass
class GpuHealth:
    """Health of one GPU (see the module docstring). ``state`` / ``reason`` are what the sample
    shows; ``xid_count`` / ``last_xid`` count the critical XID events seen."""

    base_s: float = 5.0
    max_s: float = 300.0
    state: str = OK
    reason: str | None = None
    next_probe_s: float = 0.0
    backoff_s: float = 0.0
    xid_count: int = 0
    last_xid: int | None = None
    ecc_uncorrectable: int | None = None
    _sick: str | None = None  # the degraded reason, kept through a loss and a recovery

    def lose(self, reason: str, now_s: float) -> bool:
        """Mark the GPU lost (again): the next probe waits twice as long as the last one.
        Returns True when this is a transition (it was not lost)."""
        fresh = self.state != LOST
        self.backoff_s = self.base_s if fresh else min(self.max_s, 2 * self.backoff_s)
        self.next_probe_s = now_s + self.backoff_s
        self.state, self.reason = LOST, reason
        return fresh

    def probe_due(self, now_s: float) -> bool:
        """True when the GPU should be read: it is not lost, or its next probe is due."""
        return self.state != LOST or now_s >= self.next_probe_s

    def answered(self) -> None:
        """The GPU was read: a lost one has recovered (to ``degraded`` if it was sick before)."""
        if self.state == LOST:
            self.state, self.reason = (DEGRADED, self._sick) if self._sick else (OK, None)
            self.backoff_s = 0.0

    def xid(self, code: int) -> None:
        self.xid_count += 1
        self.last_xid = code
        self._degrade(f"XID {code}")

    def check(self, ecc_uncorrectable: int | None, pages_pending: bool | None) -> None:
        """Degrade on a rise of the uncorrectable ECC count or a pending page retirement."""
        if ecc_uncorrectable is not None:
            if self.ecc_uncorrectable is not None and ecc_uncorrectable > self.ecc_uncorrectable:
                self._degrade(f"uncorrectable ECC errors {self.ecc_uncorrectable} -> {ecc_uncorrectable}")
            self.ecc_uncorrectable = ecc_uncorrectable
        if pages_pending and self._sick is None:
            self._degrade("page retirement pending (reboot needed)")

    def _degrade(self, reason: str) -> None:
        self._sick = reason
        if self.state != LOST:
            self.state, self.reason = DEGRADED, reason
