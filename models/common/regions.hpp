// Models keep their page-table state in arrays per region: every 1 GiB of guest physical space
// that overlaps a memslot, found from a gfn through a lookup table (a few loads, for hits()).
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sim/vm/types.hpp"

namespace kvmsim::models {

class GibRegions {
public:
    static constexpr std::uint32_t kNone = ~std::uint32_t{0};

    GibRegions() = default;
    // std::invalid_argument "MODEL: memslots span more than 16 PiB of guest physical space".
    GibRegions(const std::vector<vm::Memslot>& memslots, std::string_view model) {
        for (const vm::Memslot& m : memslots)
            if (m.npages)
                for (std::uint64_t g = m.base_gfn >> 18; g <= (m.base_gfn + m.npages - 1) >> 18; ++g) g1_.push_back(g);
        std::sort(g1_.begin(), g1_.end());
        g1_.erase(std::unique(g1_.begin(), g1_.end()), g1_.end());
        if (g1_.empty()) return;
        base_ = g1_.front();
        const std::uint64_t span = g1_.back() - g1_.front() + 1;
        if (span > (std::uint64_t{1} << 24))
            throw std::invalid_argument(std::string(model) + ": memslots span more than 16 PiB of guest physical space");
        lut_.assign(span, kNone);
        for (std::size_t r = 0; r < g1_.size(); ++r) lut_[g1_[r] - base_] = static_cast<std::uint32_t>(r);
    }

    std::size_t size() const { return g1_.size(); }
    // Region r covers gfns [g1()[r] << 18, (g1()[r] + 1) << 18); sorted.
    const std::vector<std::uint64_t>& g1() const { return g1_; }
    // The region holding gfn, or kNone.
    std::uint32_t of(vm::Gfn gfn) const {
        const std::uint64_t r = (gfn >> 18) - base_;
        return r < lut_.size() ? lut_[r] : kNone;
    }
    std::uint64_t bytes() const { return lut_.size() * 4 + g1_.size() * 8; }

private:
    std::vector<std::uint64_t> g1_;
    std::vector<std::uint32_t> lut_;
    std::uint64_t base_ = 0;
};

}  // namespace kvmsim::models
