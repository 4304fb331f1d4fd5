"""NVIDIA's XID catalogue as dhc reads it: for each XID, what it means and what dhc asks of an operator.

Source: NVIDIA, "Analyzing Xid Errors with the Xid Catalog"
(https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html), the catalogue for Ampere,
Hopper and Blackwell (A100, H100, B100/B200, GB200), as published up to XID 172, read 2025-10-29.
NVIDIA gives each XID an immediate "resolution bucket"; dhc turns it into a node action:

- RESTART_APP, IGNORE, CHECK_APP/CUDA, INVESTIGATE_SW, UPDATE_SWFW: the application or the software
  stack, not the node: ``None``.
- RESET_GPU, RESTART_VM, the workflows for XID 48 and for NVLink (74, 144-150): ``Reboot`` (dhc has
  no GPU-reset action; a reboot resets every GPU). For NVLink5 XIDs 144-150 NVIDIA decodes the
  register bits into IGNORE or RESET_GPU; dhc does not decode them and asks for the reset.
- RESTART_BM for XID 79 (fallen off the bus), CHECK_MECHANICALS, and retirement or remapping failures
  (64, 157), worn-out power smoothing (165): ``Replace``, as cloud operators treat them.
- XID 154 carries the action the driver itself asks for ("GPU recovery action changed from 0x0
  (None) to 0x2 (Node Reboot Required)"); ``recovery_action`` reads it from the line.

XIDs the catalogue lists as "Unused" on current GPUs are left out: one seen in a log is reported as
unknown (``lookup`` returns None), never silently as "no action".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dhc.model import Action

SOURCE = "NVIDIA Xid Catalog (docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html), read 2025-10-29"
N, B, R = Action.NONE, Action.REBOOT, Action.REPLACE


@dataclass(frozen=True)
class XidInfo:
    xid: int
    mnemonic: str
    meaning: str
    nvidia_action: str  # NVIDIA's immediate resolution bucket
    action: Action  # what dhc asks of the node


_ROWS: tuple[tuple[int, str, str, str, Action], ...] = (
    (8, "ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT", "GPU stopped processing", "RESTART_APP", N),
    (11, "ROBUST_CHANNEL_GR_ERROR_MISSING_HW", "invalid or corrupted push buffer stream", "RESTART_APP", N),
    (13, "ROBUST_CHANNEL_GR_EXCEPTION", "graphics engine exception (usually the application)", "RESTART_APP", N),
    (25, "ROBUST_CHANNEL_GR_ILLEGAL_NOTIFY", "invalid or illegal push buffer stream", "RESTART_APP", N),
    (31, "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", "GPU memory page fault (usually the application)", "RESTART_APP", N),
    (32, "ROBUST_CHANNEL_PBDMA_ERROR", "invalid or corrupted push buffer stream", "RESTART_APP", N),
    (37, "ROBUST_CHANNEL_FECS_ERR_UNIMP_FIRMWARE_METHOD", "driver firmware error", "IGNORE", N),
    (38, "ROBUST_CHANNEL_FECS_ERR_WATCHDOG_TIMEOUT", "driver firmware error", "IGNORE", N),
    *((x, f"ROBUST_CHANNEL_CE{x - 39}_ERROR", "copy engine exception", "RESTART_APP", N) for x in (39, 40, 41)),
    (43, "ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR", "GPU stopped processing (usually the application)", "IGNORE", N),
    (44, "ROBUST_CHANNEL_GR_FAULT_DURING_CTXSW", "graphics engine fault during context switch", "IGNORE", N),
    (45, "ROBUST_CHANNEL_PREEMPTIVE_REMOVAL", "preemptive cleanup after an earlier error", "WORKFLOW_XID_45", N),
    (46, "ROBUST_CHANNEL_GPU_TIMEOUT_ERROR", "GPU stopped processing", "RESET_GPU", B),
    (48, "ROBUST_CHANNEL_GPU_ECC_DBE", "double-bit ECC error", "WORKFLOW_XID_48", B),
    (54, "SILENT_RUNNING_PWR_REDUCED_CLOCKING", "auxiliary power is not connected to the GPU board",
     "CHECK_MECHANICALS", R),
    (60, "ROBUST_CHANNEL_SEC2_ERROR", "video processor exception", "RESTART_APP", N),
    (61, "PMU_BREAKPOINT", "internal micro-controller breakpoint (GPUs before Ampere)", "RESET_GPU", B),
    (62, "PMU_HALT_ERROR", "internal micro-controller halt", "RESET_GPU", B),
    (63, "INFOROM_DRAM_RETIREMENT_EVENT", "ECC page retirement or row remapping recorded (NVML's pending "
     "flags judge it)", "IGNORE", N),
    (64, "INFOROM_DRAM_RETIREMENT_FAILURE", "ECC page retirement or row remapping failed", "RESET_GPU", R),
    (66, "ROBUST_CHANNEL_FECS_ERR_REG_ACCESS_VIOLATION", "illegal access by driver", "IGNORE", N),
    (67, "ROBUST_CHANNEL_FECS_ERR_VERIF_VIOLATION", "illegal access by driver", "IGNORE", N),
    (68, "ROBUST_CHANNEL_NVDEC0_ERROR", "NVDEC0 exception", "RESTART_APP", N),
    (69, "ROBUST_CHANNEL_GR_CLASS_ERROR", "graphics engine class error", "RESTART_APP", N),
    *((x, f"ROBUST_CHANNEL_CE{x - 67}_ERROR", "copy engine error", "RESTART_APP", N) for x in (70, 71, 72)),
    (74, "NVLINK_ERROR", "NVLink error", "WORKFLOW_NVLINK_ERR", B),
    *((x, f"ROBUST_CHANNEL_CE{x - 69}_ERROR", "copy engine error", "RESTART_APP", N) for x in (75, 76, 77)),
    (78, "VGPU_START_ERROR", "vGPU start error", "UPDATE_SWFW", N),
    (79, "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS", "GPU has fallen off the bus", "RESTART_BM", R),
    (80, "PBDMA_PUSHBUFFER_CRC_MISMATCH", "corrupted data sent to GPU", "RESTART_APP", N),
    (82, "ROBUST_CHANNEL_NVJPG0_ERROR", "NVJPG0 error", "RESTART_APP", N),
    *((x, f"ROBUST_CHANNEL_NVDEC{x - 82}_ERROR", "video decoder error", "RESTART_APP", N) for x in (83, 84)),
    (85, "ROBUST_CHANNEL_CE9_ERROR", "copy engine error", "RESTART_APP", N),
    (86, "ROBUST_CHANNEL_OFA0_ERROR", "optical flow accelerator exception", "RESTART_APP", N),
    *((x, f"ROBUST_CHANNEL_NVDEC{x - 85}_ERROR", "video decoder error", "RESTART_APP", N) for x in (88, 89)),
    (92, "EXCESSIVE_SBE_INTERRUPTS", "high single-bit ECC error rate", "IGNORE", N),
    (93, "INFOROM_ERASE_LIMIT_EXCEEDED", "non-fatal violation of the InfoROM wear limit", "IGNORE", N),
    (94, "ROBUST_CHANNEL_CONTAINED_ERROR", "contained ECC error (the application was stopped)", "RESTART_APP", N),
    (95, "ROBUST_CHANNEL_UNCONTAINED_ERROR", "uncontained ECC error", "RESET_GPU", B),
    *((x, f"ROBUST_CHANNEL_NVDEC{x - 91}_ERROR", "video decoder error", "RESTART_APP", N) for x in (96, 97, 98)),
    *((x, f"ROBUST_CHANNEL_NVJPG{x - 98}_ERROR", "JPEG engine error", "RESTART_APP", N) for x in range(99, 106)),
    (106, "SMBPBI_TEST_MESSAGE", "SMBPBI test message", "IGNORE", N),
    (107, "SMBPBI_TEST_MESSAGE_SILENT", "SMBPBI test message (silent)", "IGNORE", N),
    (108, "NVLINK_REMOTE_TRANSLATION_ERROR", "NVLink remote translation error", "IGNORE", N),
    (109, "ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR", "context switch timeout", "RESET_GPU", B),
    (110, "SEC_FAULT_ERROR", "security fault", "RESET_GPU", B),
    (119, "GSP_RPC_TIMEOUT", "GSP RPC timeout", "RESET_GPU", B),
    (120, "GSP_ERROR", "GSP error", "RESET_GPU", B),
    (121, "C2C_ERROR", "C2C (chip-to-chip) link error", "IGNORE", N),
    *((x, f"ROBUST_CHANNEL_CE{x - 116}_ERROR", "copy engine error", "RESTART_APP", N) for x in range(126, 136)),
    (136, "ALI_TRAINING_FAIL", "NVLink training failed", "RESET_GPU", B),
    (137, "NVLINK_PRIV_ERR", "NVLink privilege error", "IGNORE", N),
    (139, "ROBUST_CHANNEL_OFA1_ERROR", "optical flow accelerator error", "RESTART_APP", N),
    (140, "UNRECOVERABLE_ECC_ERROR_ESCAPE", "unrecovered ECC error", "RESET_GPU", B),
    (141, "ROBUST_CHANNEL_FAST_PATH_ERROR", "CUDA fast path error", "IGNORE", N),
    (143, "GPU_INIT_ERROR", "GPU initialization error", "RESET_GPU", B),
    *((x, f"NVLINK_{unit}_ERROR", f"NVLink5 {unit} error", "WORKFLOW_NVLINK5_ERR", B)
      for x, unit in zip(range(144, 151), ("SAW", "RLW", "TLW", "TREX", "NVLPW_CTRL", "NETIR", "MSE"), strict=True)),
    (151, "ROBUST_CHANNEL_KEY_ROTATION_ERROR", "key rotation error", "RESTART_VM", B),
    (152, "ROBUST_CHANNEL_DLA_SMMU_ERROR", "DLA SMMU error", "IGNORE", N),
    (153, "ROBUST_CHANNEL_DLA_TIMEOUT", "DLA timeout", "IGNORE", N),
    (154, "GPU_RECOVERY_ACTION_CHANGED", "the driver changed the GPU's recovery action", "XID_154", B),
    (155, "NVLINK_SW_DEFINED_ERROR", "NVLink software-defined error", "RESET_GPU", B),
    (156, "RESOURCE_RETIREMENT_EVENT", "resource retirement event", "RESET_GPU", B),
    (157, "RESOURCE_RETIREMENT_FAILURE", "resource retirement failed", "CONTACT_SUPPORT", R),
    (158, "GPU_FATAL_TIMEOUT", "GPU fatal timeout", "RESET_GPU", B),
    (159, "ROBUST_CHANNEL_CHI_NON_DATA_ERROR", "CHI non-data error", "CHECK_UVM", N),
    (160, "CHANNEL_RETIREMENT_EVENT", "channel retirement event", "IGNORE", N),
    (161, "CHANNEL_RETIREMENT_FAILURE", "channel retirement failure", "IGNORE", N),
    (162, "PSHC_REENGAGED", "power smoothing circuitry re-engaged", "(none given)", N),
    (163, "PSHC_DISENGAGED", "power smoothing circuitry disengaged", "(none given)", N),
    (164, "PSHC_LOW_LIFETIME", "power smoothing circuitry near the end of its lifetime", "(none given)", N),
    (165, "PSHC_ZERO_LIFETIME", "power smoothing circuitry lifetime exhausted", "(none given)", R),
    (166, "NVLINK_SECURE_CRYPTO_ERR", "NVLink traffic before the link was set up for encryption", "(none given)", B),
    (167, "PCIE_FATAL_TIMEOUT", "PCIe fatal timeout", "(none given)", B),
    (168, "REDUCED_GPU_MEMORY_CAPACITY", "errors in the write-protected region: reduced memory", "(none given)", R),
    (169, "SEC2_HALT_ERROR", "internal micro-controller halt (SEC2)", "(none given)", B),
    (170, "NVLINK_SECURE_OTHER", "NVLink interrupt seen in confidential-computing mode", "(none given)", B),
    (171, "UNCORRECTABLE_DRAM_ERROR", "uncorrectable DRAM error (detail of an XID 48)", "(none given)", B),
    (172, "UNCORRECTABLE_SRAM_ERROR", "uncorrectable SRAM error (detail of an XID 48)", "(none given)", B),
)
CATALOGUE: dict[int, XidInfo] = {row[0]: XidInfo(*row) for row in _ROWS}

# nvmlDeviceGpuRecoveryAction_t, as XID 154 prints it: "... to 0x2 (Node Reboot Required)"
RECOVERY_ACTIONS: dict[int, tuple[str, Action]] = {
    0: ("none", N), 1: ("GPU reset", B), 2: ("node reboot", B), 3: ("drain P2P", B), 4: ("drain and reset", B),
    5: ("recover IMEX domain", B), 6: ("PCIe bus reset", B), 7: ("system reboot", B),
}
_RECOVERY = re.compile(r"recovery action changed (?:from \S+ \([^)]*\) )?to 0x(?P<code>[0-9a-fA-F]+)")


def lookup(xid: int) -> XidInfo | None:
    return CATALOGUE.get(xid)


def recovery_action(text: str) -> tuple[str, Action] | None:
    """The recovery action an XID 154 line asks for, or None when the line does not say one dhc knows."""
    match = _RECOVERY.search(text)
    return RECOVERY_ACTIONS.get(int(match["code"], 16)) if match else None
