// struct kvm_mmu_memory_cache (virt/kvm/kvm_main.c, v6.x): objects allocated ahead, outside
// mmu_lock, because allocation may sleep.
//
//   __kvm_mmu_topup_memory_cache(mc, capacity, min): returns 0 at once if nobjs >= min; else
//   allocates the object array once (fixing the capacity; asking for another capacity later is an
//   error, -EIO), then allocates objects until nobjs == capacity.
//   kvm_mmu_topup_memory_cache(mc, min) uses capacity KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE (40 on x86).
//   kvm_mmu_memory_cache_alloc(mc): takes an object; on an empty cache it WARNs and falls back to
//   an atomic allocation.
//
// The simulated cost of allocating objects is the model's (one cost per object from the host
// profile): topup() reports how many objects it allocated.
#pragma once

#include <cstdint>
#include <string>

#include "sim/engine/time.hpp"

namespace kvmsim::models {

inline constexpr std::uint32_t kKvmArchNrObjsPerMemoryCache = 40;  // arch/x86/include/asm/kvm_types.h

class MmuMemoryCache {
public:
    static constexpr int kOk = 0;
    static constexpr int kEio = -5;  // capacity changed across top-ups

    MmuMemoryCache() = default;
    MmuMemoryCache(std::string name, engine::Time cost_per_object)
        : name_(std::move(name)), cost_(cost_per_object) {}

    const std::string& name() const { return name_; }
    std::uint32_t nobjs() const { return nobjs_; }
    std::uint32_t capacity() const { return capacity_; }
    bool array_allocated() const { return capacity_ != 0; }
    engine::Time cost_per_object() const { return cost_; }

    // __kvm_mmu_topup_memory_cache: *allocated receives the number of objects allocated.
    int topup(std::uint32_t capacity, std::uint32_t min, std::uint32_t* allocated);
    // kvm_mmu_topup_memory_cache.
    int topup(std::uint32_t min, std::uint32_t* allocated) {
        return topup(kKvmArchNrObjsPerMemoryCache, min, allocated);
    }
    // kvm_mmu_memory_cache_nr_free_objects.
    std::uint32_t nr_free_objects() const { return nobjs_; }
    // kvm_mmu_memory_cache_alloc: true when served from the cache, false when the cache was empty
    // (the kernel then WARNs and allocates with GFP_ATOMIC: the caller pays cost_per_object()).
    bool alloc() {
        if (nobjs_ == 0) return false;
        --nobjs_;
        return true;
    }
    // kvm_mmu_free_memory_cache: frees every cached object (the array too); returns how many.
    std::uint32_t free_all() {
        const std::uint32_t n = nobjs_;
        nobjs_ = 0;
        capacity_ = 0;
        return n;
    }

private:
    std::string name_;
    engine::Time cost_;
    std::uint32_t nobjs_ = 0;
    std::uint32_t capacity_ = 0;
};

}  // namespace kvmsim::models
