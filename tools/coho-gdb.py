# SPDX-License-Identifier: MIT
"""gdb commands for coho coroutines (tools/README.md, "coho-gdb.py").

    (gdb) source tools/coho-gdb.py       # or auto-loaded next to an installed libcoho.so
    (gdb) coho list                      # every coroutine of every scheduler
    (gdb) coho bt ID                     # backtrace of a coroutine, from its saved context
    (gdb) coho frame ID [N]              # switch to coroutine ID and select its frame N
    (gdb) coho switch ID                 # make coroutine ID the selected thread's context
    (gdb) coho switch back               # restore the thread's own registers

ID is a coroutine id as `coho list` prints it (in decimal, as the dump and the log print it),
SCHED:ID (the index `coho list` gives the scheduler) where two schedulers hand out the same id,
or a coroutine's name when one coroutine has it.

The commands read libcoho's debugger registry (coroutine/debug.c: coho__debug_registry, a list
of the live schedulers and a table of field offsets), so they work on a live process and on a
core file, and need no debug information for libcoho. `coho bt` and `coho switch` load the
coroutine's saved registers (the frame of coho__ctx_switch) into the scheduler's thread and
put the thread's own back afterwards (`coho bt`) or on `coho switch back`; nothing runs in the
process. In a live process, run `coho switch back` before letting it continue.
"""

import struct
import time

import gdb
from gdb.unwinder import Unwinder, register_unwinder

MAGIC = 0x6F686F63
VERSION = 1
LAYOUT_FIELDS = (
    "magic version arch "
    "sched_next sched_tid sched_pool sched_current sched_ctx sched_ready_count sched_live "
    "sched_last_poll_ns "
    "pool_slabs pool_nslabs pool_shift pool_mask pool_stride pool_fresh pool_header "
    "co_id co_state co_name co_name_max co_fn co_entry_name co_ctx co_wait_what co_wait_detail "
    "co_wait_since_ms co_stack_lo co_stack_size co_has_stack co_daemon co_cancelled "
    "ctx_frame_size ctx_regs_count"
).split()
# The registers of a saved context, in the order of coroutine/debug.c's ctx_regs; the last one
# is where the context resumes (the pc), and the stack pointer is saved sp + ctx_frame_size.
CTX_REGS = {
    1: ("rbx", "rbp", "r12", "r13", "r14", "r15", "rip"),
    2: ("x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30"),
}
SP_REG = {1: "rsp", 2: "sp"}
PC_REG = {1: "rip", 2: "pc"}
STATES = {1: "ready", 2: "running", 3: "parked", 4: "done"}
SLOT_LIVE = 0xFFFFFFFF


class CohoError(gdb.GdbError):
    pass


def _mem(addr, size):
    return bytes(gdb.selected_inferior().read_memory(addr, size))


def _u(addr, size):
    return int.from_bytes(_mem(addr, size), "little", signed=False)


def _u64(addr):
    return _u(addr, 8)


def _u32(addr):
    return _u(addr, 4)


def _cstring(addr, limit=256):
    """The NUL-terminated string at addr (at most limit bytes), read in small pieces so that
    one near the end of a mapping reads too; None for NULL or unreadable memory."""
    if addr == 0:
        return None
    out = b""
    while len(out) < limit:
        try:
            piece = _mem(addr + len(out), min(32, limit - len(out)))
        except gdb.MemoryError:
            if not out:
                return None
            break
        nul = piece.find(b"\0")
        if nul >= 0:
            out += piece[:nul]
            break
        out += piece
    return out.decode("utf-8", "replace")


def _registry_address():
    try:
        return int(gdb.parse_and_eval("(unsigned long)&coho__debug_registry"))
    except gdb.error:
        raise CohoError(
            "coho: no coho__debug_registry in this program (not linked with libcoho, "
            "libcoho not loaded yet, or its symbol table stripped)"
        )


def _layout(reg):
    addr = _u64(reg)
    n = len(LAYOUT_FIELDS)
    values = struct.unpack("<%dI" % n, _mem(addr, 4 * n))
    lay = dict(zip(LAYOUT_FIELDS, values))
    if lay["magic"] != MAGIC:
        raise CohoError("coho: coho__debug_registry does not point at a layout table")
    if lay["version"] != VERSION:
        raise CohoError(
            "coho: layout version %d, this script reads version %d (use the coho-gdb.py of "
            "that libcoho)" % (lay["version"], VERSION)
        )
    if lay["arch"] not in CTX_REGS:
        raise CohoError("coho: unknown architecture %d in the layout table" % lay["arch"])
    count = lay["ctx_regs_count"]
    lay["ctx_regs"] = struct.unpack("<%dI" % count, _mem(addr + 4 * n, 4 * count))
    return lay


def _wait_format(what, detail):
    """What a parked coroutine waits on, as coroutine/dump.c formats it."""
    if what is None:
        what = "event"
    if what.endswith("@"):
        return "%s0x%x" % (what, detail & 0xFFFFFFFFFFFFFFFF)
    if what.endswith("="):
        return "%s%d" % (what, detail & 0xFFFFFFFFFFFFFFFF)
    if detail >= 0:
        return "%s %d" % (what, detail)
    return what


def _symbol(addr):
    try:
        text = gdb.execute("info symbol 0x%x" % addr, to_string=True).strip()
    except gdb.error:
        return "0x%x" % addr
    if text.startswith("No symbol"):
        return "0x%x" % addr
    return text.split(" in section ")[0]


class Sched:
    def __init__(self, index, addr, lay):
        self.index = index
        self.addr = addr
        self.tid = _u32(addr + lay["sched_tid"])
        self.current = _u64(addr + lay["sched_current"])
        self.ready_count = _u64(addr + lay["sched_ready_count"])
        self.live = _u64(addr + lay["sched_live"])
        self.last_poll_ns = _u64(addr + lay["sched_last_poll_ns"])
        self.lay = lay

    def coroutines(self):
        """The live coroutines, in slot order; one memory read per slab of the pool."""
        lay = self.lay
        pool = _u64(self.addr + lay["sched_pool"])
        slabs = _u64(pool + lay["pool_slabs"])
        shift = _u32(pool + lay["pool_shift"])
        mask = _u32(pool + lay["pool_mask"])
        stride = _u64(pool + lay["pool_stride"])
        fresh = _u64(pool + lay["pool_fresh"])
        per_slab = mask + 1
        for first in range(0, fresh, per_slab):
            slab = _u64(slabs + 8 * (first >> shift))
            count = min(per_slab, fresh - first)
            buf = _mem(slab, count * stride)
            for k in range(count):
                off = k * stride
                gen, nxt = struct.unpack_from("<II", buf, off)
                if nxt != SLOT_LIVE:
                    continue
                yield Co(self, slab + off + lay["pool_header"], gen << 32 | (first + k),
                         buf, off + lay["pool_header"])


_strings = {}  # address -> string, per command
_symbols = {}  # entry address -> symbol, per command


def _static_string(addr, limit):
    """A string the program never changes (entry names, wait labels), read once."""
    if addr not in _strings:
        _strings[addr] = _cstring(addr, limit)
    return _strings[addr]


class Co:
    def __init__(self, sched, addr, pool_id, buf, at):
        lay = sched.lay

        def u(field, size=8):
            return int.from_bytes(buf[at + lay[field]:at + lay[field] + size], "little")

        self.sched = sched
        self.addr = addr
        self.id = u("co_id") or pool_id
        self.state = u("co_state", 1)
        raw = buf[at + lay["co_name"]:at + lay["co_name"] + lay["co_name_max"]]
        self.name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        self.fn = u("co_fn")
        self.entry_name = _static_string(u("co_entry_name"), 256)
        self.sp = u("co_ctx")
        self.wait_what = _static_string(u("co_wait_what"), 80)
        self.wait_detail = struct.unpack_from("<q", buf, at + lay["co_wait_detail"])[0]
        self.wait_since_ms = u("co_wait_since_ms")
        self.daemon = u("co_daemon", 1) != 0
        self.cancelled = u("co_cancelled", 1) != 0
        if self.addr == sched.current:
            self.state = 2

    def state_name(self):
        return STATES.get(self.state, "state %d" % self.state)

    def entry(self):
        if self.entry_name:
            return self.entry_name
        if self.fn not in _symbols:
            _symbols[self.fn] = _symbol(self.fn)
        return _symbols[self.fn]

    def wait(self):
        if self.state != 3:
            return ""
        return _wait_format(self.wait_what, self.wait_detail)


def _live_process():
    inf = gdb.selected_inferior()
    if inf.pid == 0:
        return False
    try:
        return gdb.selected_inferior().connection.type == "native" and not _is_core()
    except AttributeError:
        return not _is_core()


def _is_core():
    try:
        return "core" in gdb.execute("info target", to_string=True).split("\n", 2)[1].lower()
    except (gdb.error, IndexError):
        return False


def _now_ms(scheds):
    """The monotonic clock in ms: the machine's in a live process, else the latest scheduler
    poll (a core file: the time of the dump, to within one loop iteration)."""
    if _live_process():
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000000, "now"
    latest = max((s.last_poll_ns for s in scheds), default=0)
    return latest // 1000000, "last poll"


def schedulers():
    _strings.clear()  # another process, or the same one run again, has other addresses
    _symbols.clear()
    reg = _registry_address()
    lay = _layout(reg)
    out = []
    addr = _u64(reg + 8)
    while addr != 0 and len(out) < 4096:
        out.append(Sched(len(out), addr, lay))
        addr = _u64(addr + lay["sched_next"])
    out.reverse()  # the registry is newest first; number them in creation order
    for i, s in enumerate(out):
        s.index = i
    return out, lay


def find_coroutine(spec):
    """The coroutine named by ID, SCHED:ID or NAME (a coroutine's name, if only one has it)."""
    scheds, lay = schedulers()
    want_sched = None
    text = spec.strip()
    head, sep, tail = text.partition(":")
    if sep and head.isdigit():
        want_sched = int(head)
        text = tail
    try:
        want_id, want_name = int(text, 0), None
    except ValueError:
        want_id, want_name = None, text
    found = []
    for s in scheds:
        if want_sched is not None and s.index != want_sched:
            continue
        for co in s.coroutines():
            if co.id == want_id or (want_name is not None and co.name == want_name):
                found.append(co)
    if not found:
        raise CohoError("coho: no coroutine %s (see `coho list`)" % spec)
    if len(found) > 1:
        raise CohoError(
            "coho: %s names a coroutine on each of schedulers %s: write SCHED:ID"
            % (spec, ", ".join(str(c.sched.index) for c in found))
        )
    return found[0], lay


def _thread_of(sched):
    for t in gdb.selected_inferior().threads():
        if t.ptid[1] == sched.tid:
            return t
    raise CohoError("coho: no thread with tid %d (scheduler %d)" % (sched.tid, sched.index))


class _Switch:
    """The coroutine `coho switch` shows in place of its thread's callers, if any."""

    thread = None
    regs = None
    co = None


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class CohoUnwinder(Unwinder):
    """While a coroutine is switched to, the innermost frame of its scheduler's thread unwinds
    to the coroutine's saved context instead of the thread's own caller: frame 0 stays where
    the thread is (typically in epoll_wait), frames 1 and up are the coroutine's stack. Nothing
    is written to the process or the core file."""

    def __init__(self):
        super().__init__("coho")

    def __call__(self, pending_frame):
        if _Switch.thread is None or pending_frame.level() != 0:
            return None
        thread = gdb.selected_thread()
        if thread is None or thread.ptid != _Switch.thread.ptid:
            return None
        arch = _Switch.co.sched.lay["arch"]
        # Frame 0's id: its real pc, and as its stack address the coroutine's saved sp, which
        # lies below the coroutine's frames; with the thread's own sp (another stack, perhaps
        # above the coroutine's) gdb would take frame 1 for an inner frame and stop there.
        pc = pending_frame.read_register(PC_REG[arch])
        u64 = gdb.lookup_type("unsigned long")
        info = pending_frame.create_unwind_info(_FrameId(gdb.Value(_Switch.co.sp).cast(u64), pc))
        for name, value in _Switch.regs.items():
            info.add_saved_register(name, gdb.Value(value).cast(u64))
        return info


def switch_to(co, lay):
    if co.state == 4:
        raise CohoError("coho: coroutine %d has finished (no stack left)" % co.id)
    if co.state == 2:
        raise CohoError(
            "coho: coroutine %d is running: its stack is thread %d's (`thread` and `bt`)"
            % (co.id, _thread_of(co.sched).num)
        )
    if co.sp == 0:
        raise CohoError("coho: coroutine %d has no saved context" % co.id)
    arch = lay["arch"]
    names = CTX_REGS[arch]
    regs = {}
    for name, off in zip(names, lay["ctx_regs"]):
        regs[name] = _u64(co.sp + off)
    regs[SP_REG[arch]] = co.sp + lay["ctx_frame_size"]
    regs[PC_REG[arch]] = regs[names[-1]]
    thread = _thread_of(co.sched)
    _Switch.thread, _Switch.regs, _Switch.co = thread, regs, co
    gdb.invalidate_cached_frames()
    thread.switch()
    gdb.newest_frame().select()


def switch_back(quiet=False):
    if _Switch.thread is None:
        if not quiet:
            raise CohoError("coho: no `coho switch` to undo")
        return
    _Switch.thread = _Switch.regs = _Switch.co = None
    gdb.invalidate_cached_frames()


def _on_stop(event):
    switch_back(quiet=True)  # the thread's registers changed: the saved context means nothing


gdb.events.cont.connect(_on_stop)
register_unwinder(None, CohoUnwinder(), replace=True)


class CohoPrefix(gdb.Command):
    """coho coroutines: coho list, coho bt ID, coho frame ID [N], coho switch ID | back."""

    def __init__(self):
        super().__init__("coho", gdb.COMMAND_STACK, prefix=True)


class CohoList(gdb.Command):
    """List every coroutine of every scheduler: id, name, state, what it waits on and for how
    long (against the monotonic clock: now in a live process, the last poll in a core file),
    the entry function. Usage: coho list [STATE]"""

    def __init__(self):
        super().__init__("coho list", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        only = arg.strip() or None
        scheds, _ = schedulers()
        now, ref = _now_ms(scheds)
        if not scheds:
            gdb.write("coho: no scheduler\n")
            return
        for s in scheds:
            try:
                thread = _thread_of(s).num
            except CohoError:
                thread = "?"
            cos = list(s.coroutines())
            gdb.write(
                "scheduler %d at 0x%x, thread %s (tid %d): %d coroutines, %d unfinished, "
                "%d ready\n" % (s.index, s.addr, thread, s.tid, len(cos), s.live, s.ready_count)
            )
            gdb.write(
                "  %-12s %-16s %-8s %-32s %-26s %s\n"
                % ("id", "name", "state", "waits on", "since (ms, for)", "entry")
            )
            for co in cos:
                if only is not None and co.state_name() != only:
                    continue
                since = ""
                if co.state == 3:
                    age = now - co.wait_since_ms if now >= co.wait_since_ms else 0
                    since = "%d (%d ms)" % (co.wait_since_ms, age)
                flags = "".join(
                    f for f, on in ((" daemon", co.daemon), (" cancelled", co.cancelled)) if on
                )
                gdb.write(
                    "  %-12d %-16s %-8s %-32s %-26s %s%s\n"
                    % (
                        co.id,
                        co.name or "-",
                        co.state_name(),
                        co.wait() or "-",
                        since or "-",
                        co.entry(),
                        flags,
                    )
                )
        gdb.write("(wait times against the monotonic clock, %s = %d ms)\n" % (ref, now))


class CohoBt(gdb.Command):
    """Backtrace of coroutine ID from its saved context, without resuming it.
    Usage: coho bt ID [bt options], e.g. coho bt 4294967298 full"""

    def __init__(self):
        super().__init__("coho bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        parts = arg.split(None, 1)
        if not parts:
            raise CohoError("usage: coho bt ID [bt options]")
        co, lay = find_coroutine(parts[0])
        if co.state == 2:
            thread = _thread_of(co.sched)
            prev = gdb.selected_thread()
            thread.switch()
            try:
                gdb.write("coroutine %d (%s) is running on thread %d:\n" % (co.id, co.name or "-", thread.num))
                gdb.execute("bt " + (parts[1] if len(parts) > 1 else ""), from_tty)
            finally:
                prev.switch()
            return
        prev = gdb.selected_thread()
        switch_to(co, lay)
        try:
            text = gdb.execute(
                "bt " + (parts[1] if len(parts) > 1 else ""), from_tty=False, to_string=True
            )
        finally:
            switch_back(quiet=True)
            if prev is not None and prev.is_valid():
                prev.switch()
        gdb.write(
            "coroutine %d (%s, entry %s) %s%s:\n"
            % (
                co.id,
                co.name or "-",
                co.entry(),
                co.state_name(),
                (" on " + co.wait()) if co.wait() else "",
            )
        )
        lines = text.splitlines(True)
        for i, line in enumerate(lines):
            if line.startswith("#1 "):
                gdb.write("".join(lines[i:]))
                break
        else:
            gdb.write(text)


class CohoSwitch(gdb.Command):
    """Load coroutine ID's saved registers into its scheduler's thread and select it, so that
    bt, frame, up, info locals... look at the coroutine. `coho switch back` restores the
    thread's own registers (do it before the process continues).
    Usage: coho switch ID | coho switch back"""

    def __init__(self):
        super().__init__("coho switch", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        arg = arg.strip()
        if arg == "back":
            switch_back()
            gdb.write("coho: back to the thread's own frames\n")
            gdb.execute("frame 0")
            return
        if not arg:
            raise CohoError("usage: coho switch ID | coho switch back")
        co, lay = find_coroutine(arg)
        switch_to(co, lay)
        gdb.write(
            "coho: thread %d shows coroutine %d (%s) from frame 1 up (frame 0 is the thread's "
            "own); `coho switch back` to undo\n" % (_Switch.thread.num, co.id, co.name or "-")
        )
        gdb.execute("frame 1")


class CohoFrame(gdb.Command):
    """Switch to coroutine ID (as `coho switch`) and select its frame N (default 0).
    Usage: coho frame ID [N]; `coho switch back` (or `coho frame back`) to undo."""

    def __init__(self):
        super().__init__("coho frame", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        parts = arg.split()
        if parts == ["back"]:
            switch_back()
            gdb.execute("frame 0")
            return
        if not parts or len(parts) > 2:
            raise CohoError("usage: coho frame ID [N] | coho frame back")
        n = 1
        if len(parts) == 2:
            try:
                n = int(parts[1])
            except ValueError:
                raise CohoError("coho: bad frame number %r" % parts[1])
            if n < 1:
                raise CohoError(
                    "coho: the coroutine's frames are numbered from 1 (0 is the thread's)"
                )
        co, lay = find_coroutine(parts[0])
        switch_to(co, lay)
        gdb.execute("frame %d" % n)


CohoPrefix()
CohoList()
CohoBt()
CohoSwitch()
CohoFrame()
