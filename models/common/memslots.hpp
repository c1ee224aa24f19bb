// Memslot bookkeeping shared by models: finding a model's own slot record (a type with
// contains(gfn) and id) and the dirty bitmap of a slot that logs dirty pages.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sim/vm/types.hpp"

namespace kvmsim::models {

template <class Slot>
Slot* slot_containing(const std::vector<std::unique_ptr<Slot>>& slots, vm::Gfn gfn) {
    for (const auto& s : slots)
        if (s->contains(gfn)) return s.get();
    return nullptr;
}

// std::invalid_argument "MODEL: no memslot with id ID" when there is none.
template <class Slot>
Slot& slot_with_id(const std::vector<std::unique_ptr<Slot>>& slots, std::uint32_t id, std::string_view model) {
    for (const auto& s : slots)
        if (s->id == id) return *s;
    throw std::invalid_argument(std::string(model) + ": no memslot with id " + std::to_string(id));
}

// The dirty bit of gfn in slot `id` (false without a bitmap or outside the slot); Slot has
// id, base, contains() and bitmap.
template <class Slot>
bool page_dirty(const std::vector<std::unique_ptr<Slot>>& slots, std::uint32_t id, vm::Gfn gfn) {
    for (const auto& s : slots) {
        if (s->id != id) continue;
        if (s->bitmap.empty() || !s->contains(gfn)) return false;
        const std::uint64_t rel = gfn - s->base;
        return (s->bitmap[rel / 64] >> (rel % 64)) & 1;
    }
    return false;
}

// KVM_MEM_LOG_DIRTY_PAGES' bitmap: a bit per page, every page's set with
// KVM_DIRTY_LOG_INITIALLY_SET (and none beyond the slot).
inline std::vector<std::uint64_t> make_dirty_bitmap(std::uint64_t npages, bool all_set) {
    std::vector<std::uint64_t> b((npages + 63) / 64, all_set ? ~std::uint64_t{0} : 0);
    if (all_set && (npages % 64)) b.back() = (std::uint64_t{1} << (npages % 64)) - 1;
    return b;
}

// KVM_CLEAR_DIRTY_LOG: the bits of the bitmap word at slot-relative page `off` (a multiple of 64)
// that the range [first, last) of slot-relative pages covers.
inline std::uint64_t dirty_word_range(std::uint64_t off, std::uint64_t first, std::uint64_t last) {
    const std::uint64_t lo = (first > off ? first : off) - off;
    const std::uint64_t hi = (last < off + 64 ? last : off + 64) - off;
    return (hi == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << hi) - 1) & ~((std::uint64_t{1} << lo) - 1);
}

}  // namespace kvmsim::models
