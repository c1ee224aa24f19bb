// A synthetic, deterministic host-physical address space for the kernel objects a model touches
// through the cache model (page-table pages, struct kvm fields, dirty bitmaps). Addresses depend
// only on the order of allocations, never on host pointers.
//
// Layout (each region is far larger than any simulated VM needs):
//   0x0000_4000_0000_0000  kernel data (struct kvm, locks, per-vCPU fields): kKernelDataBase
//   0x0000_5000_0000_0000  dirty bitmaps, one 1 TiB window per memslot:      kDirtyBitmapBase
//   0x0000_6000_0000_0000  page-table pages (PageTablePageAllocator):        kPageTableBase
//   0x0000_7000_0000_0000  L1's EPT12 pages (x86_shadow: synthetic L1 frames outside every
//                          memslot, read when KVM syncs an SP), a 16 TiB window: kEptPageHostBase
//   0x0100_0000_0000_0000  guest memory (the memslots' backing), at base + GPA: kGuestMemoryBase
#pragma once

#include <cstdint>
#include <vector>

namespace kvmsim::models {

inline constexpr std::uint64_t kKernelDataBase = 0x0000'4000'0000'0000ULL;
inline constexpr std::uint64_t kDirtyBitmapBase = 0x0000'5000'0000'0000ULL;
inline constexpr std::uint64_t kDirtyBitmapWindow = 1ULL << 40;
inline constexpr std::uint64_t kPageTableBase = 0x0000'6000'0000'0000ULL;
inline constexpr std::uint64_t kEptPageHostBase = 0x0000'7000'0000'0000ULL;
inline constexpr std::uint64_t kEptPageHostWindow = 1ULL << 44;
inline constexpr std::uint64_t kGuestMemoryBase = 0x0100'0000'0000'0000ULL;
inline constexpr std::uint64_t kHostPageSize = 4096;

// The host address of guest physical address gpa: where the host's copy_to_user /
// copy_from_user on the memslot's userspace mapping (kvm_vcpu_write_guest, kvm_vcpu_read_guest),
// and the guest itself through its EPT, reach that byte. One fixed offset: the backing's page
// frames are not modelled; every kernel region lies below kGuestMemoryBase.
inline constexpr std::uint64_t guest_memory_addr(std::uint64_t gpa) { return kGuestMemoryBase + gpa; }

// Kernel data lines handed out in order (a 64-byte line per object unless asked otherwise).
class KernelDataLayout {
public:
    // base: where this layout's objects start (a second model in the same VM uses another base).
    explicit KernelDataLayout(std::uint64_t base = kKernelDataBase) : next_(base) {}
    std::uint64_t alloc(std::uint64_t bytes = 64) {
        const std::uint64_t a = next_;
        next_ += (bytes + 63) & ~std::uint64_t{63};
        return a;
    }

private:
    std::uint64_t next_;
};

// Page-table pages: alloc() returns a page-aligned synthetic HPA. Freed pages are reused LIFO, as
// the page allocator's per-CPU lists do (so a freshly freed, possibly cached page comes back
// first). Deterministic.
class PageTablePageAllocator {
public:
    explicit PageTablePageAllocator(std::uint64_t base = kPageTableBase) : base_(base) {}
    std::uint64_t alloc() {
        ++live_;
        if (!free_.empty()) {
            const std::uint64_t a = free_.back();
            free_.pop_back();
            return a;
        }
        const std::uint64_t a = base_ + next_page_ * kHostPageSize;
        ++next_page_;
        return a;
    }
    void free(std::uint64_t hpa) {
        --live_;
        free_.push_back(hpa);
    }
    std::uint64_t live() const { return live_; }
    std::uint64_t ever_allocated() const { return next_page_; }

private:
    std::uint64_t base_;
    std::uint64_t next_page_ = 0;
    std::uint64_t live_ = 0;
    std::vector<std::uint64_t> free_;
};

}  // namespace kvmsim::models
