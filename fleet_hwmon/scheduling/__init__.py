"""Hardware-aware scheduling for a coordinator: the patch of its scheduler, in-flight tasks,
reservations and statistics around the pure decision core in :mod:`fleet_hwmon.scoring`."""

from fleet_hwmon.scheduling.contract import CoordinatorContractError, check_contract
from fleet_hwmon.scheduling.scheduler import HardwareAwareScheduler
from fleet_hwmon.scheduling.statistics import SchedulerStatistics

__all__ = ["CoordinatorContractError", "HardwareAwareScheduler", "SchedulerStatistics", "check_contract"]
