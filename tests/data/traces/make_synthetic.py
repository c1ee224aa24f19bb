#!/usr/bin/env python3
"""Writes the synthetic traces of this directory (x86-tdp-2vcpu.txt, x86-perf.txt,
arm64-stage2.txt): SYNTHETIC, not recorded on a host. The lines follow the kernel's TP_printk
formats (Linux v6.x: arch/x86/kvm/trace.h kvm_exit, kvm_entry, kvm_page_fault;
arch/x86/kvm/mmu/mmutrace.h fast_page_fault, kvm_mmu_spte_requested, handle_mmio_page_fault;
arch/arm64/kvm/trace_arm.h kvm_exit, kvm_entry, kvm_guest_fault) and the line layout of
trace-cmd report ("COMM-TID [CPU] FLAGS SECS.USECS: EVENT: FIELDS") and perf script
("COMM TID [CPU] SECS.NSECS: kvm:EVENT: FIELDS"). The timings are made up (a deterministic
generator), in the range of the project's host profiles: a first-touch 4K EPT fault a few
microseconds, a write-protection fault about one. Run it from this directory to regenerate.
"""

HEADER = "# SYNTHETIC trace (tests/data/traces/make_synthetic.py): {what}\n"


class Lcg:
    def __init__(self, seed):
        self.x = seed

    def next(self, n):
        self.x = (self.x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (self.x >> 33) % n


def x86(perf, nfaults=60, seed=7):
    r = Lcg(seed)
    out = []
    t = {0: 1000_000_000_000, 1: 1000_000_004_000}  # ns
    tid = {0: 2402, 1: 2403}
    cpu = {0: 3, 1: 5}
    rip = 0xFFFFFFFF81234560
    events = []
    base = 0x100000000  # 4G
    touched = set()
    for v in (0, 1):
        for i in range(nfaults):
            t[v] += 2000 + r.next(20000)  # guest time
            # mostly new pages; some writes to pages read before (protection faults)
            if touched and r.next(4) == 0:
                gpa = sorted(touched)[r.next(len(touched))]
                qual, ec, lat = 0x1AA, 0x6, 900 + r.next(600)  # write, page readable
            else:
                gpa = base + (v * 0x4000000) + (r.next(4096) << 12)
                w = r.next(3) == 0
                qual = 0x182 if w else 0x181
                ec = 0x6 if w else 0x4
                lat = 3000 + r.next(5000)
            touched.add(gpa)
            ex = t[v]
            events.append((ex, v, "kvm_exit", f"vcpu {v} reason EPT_VIOLATION rip 0x{rip:x} info1 0x{qual:016x} info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000"))
            events.append((ex + 300, v, "kvm_page_fault", f"vcpu {v} rip 0x{rip:x} address 0x{gpa:016x} error_code 0x{qual:x}"))
            if qual == 0x1AA and r.next(3) == 0:
                events.append((ex + 500, v, "fast_page_fault", f"vcpu {v} gva {gpa:x} error_code W sptep 00000000ce97aa9a old 0x{gpa | 0x907:x} new {gpa | 0x907:x} spurious 1 fixed 0"))
            else:
                events.append((ex + 600, v, "kvm_mmu_spte_requested", f"gfn {gpa >> 12:x} pfn {(gpa >> 12) + 0x1000:x} level 1"))
            events.append((ex + lat, v, "kvm_entry", f"vcpu {v}, rip 0x{rip:x}"))
            t[v] = ex + lat
            if r.next(5) == 0:  # an exit that is not a page fault
                t[v] += 1000 + r.next(3000)
                events.append((t[v], v, "kvm_exit", f"vcpu {v} reason HLT rip 0x{rip:x} info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000"))
                t[v] += 20000
                events.append((t[v], v, "kvm_entry", f"vcpu {v}, rip 0x{rip:x}"))
            if v == 0 and i == 10:  # an MMIO access (emulated, not guest memory)
                t[v] += 3000
                events.append((t[v], v, "kvm_exit", f"vcpu {v} reason EPT_MISCONFIG rip 0x{rip:x} info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000"))
                events.append((t[v] + 200, v, "kvm_page_fault", f"vcpu {v} rip 0x{rip:x} address 0x00000000fed00000 error_code 0x182"))
                events.append((t[v] + 400, v, "handle_mmio_page_fault", "addr:fed00000 gfn fed00 access 6"))
                t[v] += 2500
                events.append((t[v], v, "kvm_entry", f"vcpu {v}, rip 0x{rip:x}"))
    events.sort(key=lambda e: (e[0], e[1]))
    for ns, v, ev, fields in events:
        if perf:
            sub = "kvmmmu" if ev in ("fast_page_fault", "kvm_mmu_spte_requested", "handle_mmio_page_fault") else "kvm"
            out.append(f"CPU {v}/KVM {tid[v]:>6} [{cpu[v]:03d}] {ns // 10**9}.{ns % 10**9:09d}: {sub}:{ev}: {fields}\n")
        else:
            out.append(f"  CPU {v}/KVM-{tid[v]:<6} [{cpu[v]:03d}] d..1. {ns // 10**9}.{(ns % 10**9) // 1000:06d}: {ev}: {fields}\n")
    return out


def arm64(nfaults=40, seed=11):
    r = Lcg(seed)
    out, events = [], []
    for v, tid in ((0, 3301), (1, 3302)):
        t = 2000_000_000_000 + v * 3000
        for i in range(nfaults):
            t += 3000 + r.next(30000)
            ipa = 0x40000000 + v * 0x8000000 + (r.next(8192) << 12)
            kind = r.next(4)
            if kind == 0:
                esr, ec = 0x8200000F, 0x20   # IABT_LOW, permission fault (exec)
            elif kind == 1:
                esr, ec = 0x93C00047, 0x24   # DABT_LOW, WnR, translation fault level 3
            else:
                esr, ec = 0x93C00007, 0x24   # DABT_LOW, read, translation fault level 3
            lat = 2500 + r.next(6000)
            pc = 0xFFFF800008123450
            name = "IABT_LOW" if ec == 0x20 else "DABT_LOW"
            events.append((t, tid, v, "kvm_exit", f"TRAP: HSR_EC: 0x{ec:04x} ({name}), PC: 0x{pc:016x}"))
            events.append((t + 200, tid, v, "kvm_guest_fault", f"ipa 0x{ipa:x}, hsr 0x{esr:08x}, hxfar 0x{0xffff000012340000 + i:08x}, pc 0x{pc:016x}"))
            events.append((t + lat, tid, v, "kvm_entry", f"PC: 0x{pc:016x}"))
            t += lat
    events.sort(key=lambda e: (e[0], e[2]))
    for ns, tid, v, ev, fields in events:
        out.append(f"  qemu-system-aar-{tid:<6} [{v + 8:03d}] ..... {ns // 10**9}.{(ns % 10**9) // 1000:06d}: {ev}: {fields}\n")
    return out


def write(name, what, lines):
    with open(name, "w") as f:
        f.write(HEADER.format(what=what))
        f.writelines(lines)


if __name__ == "__main__":
    write("x86-tdp-2vcpu.txt", "trace-cmd report, x86 VMX/EPT, Linux v6.x formats, 2 vCPUs", x86(False))
    write("x86-perf.txt", "perf script, x86 VMX/EPT, Linux v6.x formats, 2 vCPUs", x86(True))
    write("arm64-stage2.txt", "trace-cmd report, arm64 stage-2 (kvm_guest_fault), 2 vCPUs", arm64())
