#include "models/common/memory_cache.hpp"

namespace kvmsim::models {

int MmuMemoryCache::topup(std::uint32_t capacity, std::uint32_t min, std::uint32_t* allocated) {
    if (allocated) *allocated = 0;
    if (nobjs_ >= min) return kOk;
    if (capacity_ == 0) {
        if (capacity == 0) return kEio;  // WARN_ON_ONCE(!capacity)
        capacity_ = capacity;
    }
    if (capacity_ != capacity) return kEio;  // "It is illegal to request a different capacity"
    // Allocation never fails in the model.
    const std::uint32_t n = capacity_ - nobjs_;
    nobjs_ = capacity_;
    if (allocated) *allocated = n;
    return kOk;
}

}  // namespace kvmsim::models
