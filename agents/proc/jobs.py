"""Windows job objects (kernel32 through ctypes): a started tree is a job that kills its
processes when its last handle closes (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE). The parent
holds the only handle, so its death, even TerminateProcess, ends the tree; a kill is
TerminateJobObject. Children a process starts join its job (nested jobs: Windows 8 and
later). Not run on this project's hosts (Linux): its structures' layout is unit-tested,
its calls are not.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9  # JobObjectExtendedLimitInformation
PROCESS_SET_QUOTA = 0x0100
PROCESS_TERMINATE = 0x0001
KILLED_EXIT_CODE = 1

DWORD = ctypes.c_uint32
LARGE_INTEGER = ctypes.c_int64
ULONG_PTR = ctypes.c_size_t


class IoCounters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class BasicLimitInformation(ctypes.Structure):
    _fields_ = [("PerProcessUserTimeLimit", LARGE_INTEGER),
                ("PerJobUserTimeLimit", LARGE_INTEGER),
                ("LimitFlags", DWORD),
                ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t),
                ("ActiveProcessLimit", DWORD),
                ("Affinity", ULONG_PTR),
                ("PriorityClass", DWORD),
                ("SchedulingClass", DWORD)]


class ExtendedLimitInformation(ctypes.Structure):
    _fields_ = [("BasicLimitInformation", BasicLimitInformation),
                ("IoInfo", IoCounters),
                ("ProcessMemoryLimit", ctypes.c_size_t),
                ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t),
                ("PeakJobMemoryUsed", ctypes.c_size_t)]


def kill_on_close_limits() -> ExtendedLimitInformation:
    info = ExtendedLimitInformation()
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    return info


def _kernel32() -> Any:
    """kernel32 with the signatures used here (a HANDLE is a pointer: left to ctypes'
    default int it would be cut to 32 bits on 64-bit Windows)."""
    if sys.platform != "win32":
        raise OSError(f"job objects are Windows': not on {sys.platform}")
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    sigs: dict[str, tuple[list[Any], Any]] = {
        "CreateJobObjectW": ([wintypes.LPVOID, wintypes.LPCWSTR], wintypes.HANDLE),
        "SetInformationJobObject": ([wintypes.HANDLE, ctypes.c_int, wintypes.LPVOID,
                                     wintypes.DWORD], wintypes.BOOL),
        "OpenProcess": ([wintypes.DWORD, wintypes.BOOL, wintypes.DWORD], wintypes.HANDLE),
        "AssignProcessToJobObject": ([wintypes.HANDLE, wintypes.HANDLE], wintypes.BOOL),
        "TerminateJobObject": ([wintypes.HANDLE, wintypes.UINT], wintypes.BOOL),
        "CloseHandle": ([wintypes.HANDLE], wintypes.BOOL),
    }
    for name, (args, result) in sigs.items():
        fn = getattr(k32, name)
        fn.argtypes, fn.restype = args, result
    return k32


def _check(ok: Any, what: str) -> Any:
    if ok:
        return ok
    err = 0
    if sys.platform == "win32":
        err = ctypes.get_last_error()
    raise OSError(err, f"{what} failed (Windows error {err})")


class Job:
    """One job object: ``assign`` a started process to it, ``terminate`` every process in
    it, ``close`` the handle (which kills what is left: the job kills on close)."""

    def __init__(self) -> None:
        self._k32 = _kernel32()
        self.handle: Any = _check(self._k32.CreateJobObjectW(None, None), "CreateJobObjectW")
        info = kill_on_close_limits()
        try:
            _check(self._k32.SetInformationJobObject(
                self.handle, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
                ctypes.byref(info), ctypes.sizeof(info)), "SetInformationJobObject")
        except OSError:
            self.close()
            raise

    def assign(self, pid: int) -> None:
        process = _check(self._k32.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False,
                                               pid), "OpenProcess")
        try:
            _check(self._k32.AssignProcessToJobObject(self.handle, process),
                   "AssignProcessToJobObject")
        finally:
            self._k32.CloseHandle(process)

    def terminate(self) -> None:
        if self.handle is not None:
            _check(self._k32.TerminateJobObject(self.handle, KILLED_EXIT_CODE),
                   "TerminateJobObject")

    def close(self) -> None:
        if self.handle is not None:
            self._k32.CloseHandle(self.handle)
            self.handle = None
