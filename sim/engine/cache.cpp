#include "sim/engine/cache.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <stdexcept>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kvmsim::engine {

namespace {

constexpr std::uint16_t kNoOwner = 0xFFFF;
constexpr std::uint32_t kMaxCpus = 1024;
// Per-instance slots are indexed with 32 bits in the directory (llc_slot).
constexpr std::uint64_t kMaxSlots = std::numeric_limits<std::uint32_t>::max();

[[noreturn]] void bad_config(const std::string& what) {
    throw std::invalid_argument("CacheModel: invalid configuration: " + what);
}

std::string level_label(std::size_t i, const CacheLevelConfig& l) {
    return "levels[" + std::to_string(i) + "] (\"" + l.name + "\")";
}

}  // namespace

void CacheCounters::merge(const CacheCounters& o) {
    if (levels.size() < o.levels.size()) levels.resize(o.levels.size());
    for (std::size_t i = 0; i < o.levels.size(); ++i) {
        levels[i].accesses += o.levels[i].accesses;
        levels[i].hits += o.levels[i].hits;
        levels[i].misses += o.levels[i].misses;
    }
    coherence_misses += o.coherence_misses;
    invalidations += o.invalidations;
    back_invalidations += o.back_invalidations;
    memory_accesses += o.memory_accesses;
}

CacheModel::CacheModel(CacheConfig cfg) : cfg_(std::move(cfg)) {
    if (cfg_.cpus == 0 || cfg_.cpus > kMaxCpus)
        bad_config("cpus is " + std::to_string(cfg_.cpus) + ", expected 1.." +
                   std::to_string(kMaxCpus));
    if (cfg_.line_bytes < 8 || !std::has_single_bit(cfg_.line_bytes))
        bad_config("line_bytes is " + std::to_string(cfg_.line_bytes) +
                   ", expected a power of two, at least 8");
    if (cfg_.levels.empty()) bad_config("no cache levels (at least the shared last level is needed)");
    if (cfg_.memory_latency < Time::zero())
        bad_config("memory_latency is negative (" + std::to_string(cfg_.memory_latency.ps()) + " ps)");
    if (cfg_.remote_latency < Time::zero())
        bad_config("remote_latency is negative (" + std::to_string(cfg_.remote_latency.ps()) + " ps)");
    if (cfg_.cross_socket_latency < Time::zero())
        bad_config("cross_socket_latency is negative (" + std::to_string(cfg_.cross_socket_latency.ps()) + " ps)");

    line_shift_ = static_cast<unsigned>(std::countr_zero(cfg_.line_bytes));
    const std::size_t n = cfg_.levels.size();
    for (std::size_t i = 0; i < n; ++i) {
        const CacheLevelConfig& lc = cfg_.levels[i];
        const std::string label = level_label(i, lc);
        if (lc.ways == 0) bad_config(label + ": ways is 0");
        if (lc.size_bytes == 0) bad_config(label + ": size_bytes is 0");
        if (lc.hit_latency < Time::zero())
            bad_config(label + ": hit_latency is negative (" + std::to_string(lc.hit_latency.ps()) +
                       " ps)");
        const std::uint64_t set_bytes = std::uint64_t{lc.ways} * cfg_.line_bytes;
        if (lc.size_bytes % set_bytes != 0)
            bad_config(label + ": size_bytes " + std::to_string(lc.size_bytes) +
                       " is not a multiple of ways * line_bytes (" + std::to_string(lc.ways) + " * " +
                       std::to_string(cfg_.line_bytes) + " = " + std::to_string(set_bytes) + ")");
        const std::uint64_t lines = lc.size_bytes / cfg_.line_bytes;
        if (lines > kMaxSlots)
            bad_config(label + ": " + std::to_string(lines) + " lines, at most " +
                       std::to_string(kMaxSlots) + " supported");

        Level l;
        l.ways = lc.ways;
        l.sets = lc.size_bytes / set_bytes;
        l.sets_pow2 = std::has_single_bit(l.sets);
        l.set_mask = l.sets_pow2 ? l.sets - 1 : 0;
        l.slots = static_cast<std::size_t>(lines);
        l.hit = lc.hit_latency;
        const bool shared = (i + 1 == n);
        const std::size_t total = shared ? l.slots : l.slots * cfg_.cpus;
        l.tag_lo.assign(total, kEmptyHi);
        l.tag_hi.assign(total, kEmptyHi);
        l.ages.assign(total, 0);
        if (shared) {
            llc_ = std::move(l);
        } else {
            l.llc_slot.assign(total, 0);
            priv_.push_back(std::move(l));
        }
    }
    if (!priv_.empty()) {
        words_ = (cfg_.cpus + 63) / 64;
        sharers_.assign(llc_.slots * words_, 0);
        owner_.assign(llc_.slots, kNoOwner);
    }
    zero_.levels.resize(n);
    phases_.assign(1, zero_);
}

const CacheConfig& CacheModel::config() const { return cfg_; }

void CacheModel::begin_phase(std::size_t phase) {
    if (phase >= phases_.size()) phases_.resize(phase + 1, zero_);
    cur_ = phase;
}

const CacheCounters& CacheModel::phase_counters(std::size_t phase) const {
    return phase < phases_.size() ? phases_[phase] : zero_;
}

CacheCounters CacheModel::total() const {
    CacheCounters t = zero_;
    for (const CacheCounters& p : phases_) t.merge(p);
    return t;
}

std::size_t CacheModel::phase_count() const { return phases_.size(); }

void CacheModel::flush_all() {
    auto empty = [](Level& l) {
        std::fill(l.tag_lo.begin(), l.tag_lo.end(), kEmptyHi);
        std::fill(l.tag_hi.begin(), l.tag_hi.end(), kEmptyHi);
        std::fill(l.ages.begin(), l.ages.end(), 0);
        std::fill(l.llc_slot.begin(), l.llc_slot.end(), 0);
    };
    for (Level& l : priv_) empty(l);
    empty(llc_);
    std::fill(sharers_.begin(), sharers_.end(), 0);
    std::fill(owner_.begin(), owner_.end(), kNoOwner);
    clock_ = 0;
}

inline std::uint32_t CacheModel::next_stamp() {
    if (clock_ == std::numeric_limits<std::uint32_t>::max()) [[unlikely]]
        renormalize_stamps();
    return ++clock_;
}

// The stamp counter is about to wrap: replace every set's stamps by their LRU rank (1..ways),
// which keeps the order within each set (the only order that matters), and restart the counter
// above every rank.
void CacheModel::renormalize_stamps() {
    std::uint32_t max_ways = llc_.ways;
    std::vector<std::pair<std::uint32_t, std::size_t>> order;
    auto renorm = [&](Level& l) {
        max_ways = std::max(max_ways, l.ways);
        for (std::size_t base = 0; base < l.ages.size(); base += l.ways) {
            order.clear();
            for (std::size_t s = base; s < base + l.ways; ++s)
                if (l.valid(s)) order.emplace_back(l.ages[s], s);
            std::sort(order.begin(), order.end());
            std::uint32_t rank = 0;
            for (const auto& [age, s] : order) l.ages[s] = ++rank;
        }
    };
    for (Level& l : priv_) renorm(l);
    renorm(llc_);
    clock_ = max_ways;
}

// Bit w set iff p[w] == key, for n <= 64 entries. No early exit: where a hit sits in its set is
// data-dependent, so an early-exit scan mispredicts on most hits (measured ~3x slower at random
// ways).
inline std::uint64_t CacheModel::match_mask(const std::uint32_t* p, std::uint32_t n, std::uint32_t key) {
    std::uint64_t m = 0;
    std::uint32_t w = 0;
#if defined(__SSE2__)
    const __m128i k = _mm_set1_epi32(static_cast<int>(key));
    for (; w + 4 <= n; w += 4) {
        const __m128i e = _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + w)), k);
        m |= static_cast<std::uint64_t>(_mm_movemask_ps(_mm_castsi128_ps(e))) << w;
    }
#endif
    for (; w < n; ++w) m |= std::uint64_t{p[w] == key} << w;
    return m;
}

// Compare the low halves of the whole set, then confirm candidates on the high half (a line is in
// at most one way; low-half collisions need lines 2^32 lines apart in the same set).
inline std::size_t CacheModel::find(const Level& l, std::size_t base, std::uint64_t line) const {
    const std::uint32_t* lo = l.tag_lo.data() + base;
    const std::uint32_t* hi = l.tag_hi.data() + base;
    const auto key_hi = static_cast<std::uint32_t>(line >> 32);
    for (std::uint32_t b = 0; b < l.ways; b += 64) {
        std::uint64_t m = match_mask(lo + b, std::min<std::uint32_t>(l.ways - b, 64),
                                     static_cast<std::uint32_t>(line));
        while (m != 0) {
            const auto w = b + static_cast<std::uint32_t>(std::countr_zero(m));
            if (hi[w] == key_hi) return base + w;
            m &= m - 1;
        }
    }
    return kNotFound;
}

// First empty way, else the least recently used (valid stamps are >= 1 and an empty way's is 0,
// so it wins; the minimum of (stamp, way) also breaks ties towards the lowest way). Branch-free:
// which way wins is data-dependent and would mispredict.
std::size_t CacheModel::victim(const Level& l, std::size_t base) {
    const std::uint32_t* a = l.ages.data() + base;
    auto key = [&](std::uint32_t w) -> std::uint64_t { return (std::uint64_t{a[w]} << 32) | w; };
    // Two independent min chains (even and odd ways) halve the dependency chain.
    std::uint64_t best0 = ~std::uint64_t{0}, best1 = ~std::uint64_t{0};
    std::uint32_t w = 0;
    for (; w + 1 < l.ways; w += 2) {
        best0 = std::min(best0, key(w));
        best1 = std::min(best1, key(w + 1));
    }
    if (w < l.ways) best0 = std::min(best0, key(w));
    return base + static_cast<std::uint32_t>(std::min(best0, best1));
}

bool CacheModel::is_sharer(std::size_t llc_slot, std::uint32_t cpu) const {
    return (sharers_[llc_slot * words_ + cpu / 64] >> (cpu % 64)) & 1U;
}

// Fast path: a hit in the nearest private level that needs no coherence action.
inline Time CacheModel::access_line(CacheCounters& c, std::uint32_t cpu, std::uint64_t line, bool write) {
    const std::uint32_t stamp = next_stamp();
    std::size_t l1_slot = kNotFound;
    if (!priv_.empty()) [[likely]] {
        Level& l = priv_[0];
        l1_slot = find(l, cpu * l.slots + l.set_offset(line), line);
        if (l1_slot != kNotFound && (!write || owner_[l.llc_slot[l1_slot]] == cpu)) [[likely]] {
            CacheLevelCounters& lc = c.levels[0];
            ++lc.accesses;
            ++lc.hits;
            l.ages[l1_slot] = stamp;
            return l.hit;
        }
    }
    return access_slow(c, cpu, line, write, stamp, l1_slot);
}

// Kept small so that the common case (one line, L1 hit) runs without a stack frame; ranges and
// argument errors go out of line.
Time CacheModel::touch(std::uint32_t cpu, std::uint64_t addr, std::uint64_t bytes, bool write) {
    if (cpu >= cfg_.cpus || bytes - 1 > std::numeric_limits<std::uint64_t>::max() - addr) [[unlikely]]
        return touch_range(cpu, addr, bytes, write);
    // More than one line, or bytes == 0 (bytes - 1 wraps to the maximum: either caught above or,
    // for addr == 0, a "range" to the end of the address space): both handled out of line.
    const std::uint64_t first = addr >> line_shift_;
    if (first != (addr + (bytes - 1)) >> line_shift_) [[unlikely]]
        return touch_range(cpu, addr, bytes, write);
    return access_line(phases_[cur_], cpu, first, write);
}

Time CacheModel::touch_range(std::uint32_t cpu, std::uint64_t addr, std::uint64_t bytes, bool write) {
    if (cpu >= cfg_.cpus)
        throw std::out_of_range("CacheModel::touch: cpu " + std::to_string(cpu) +
                                " out of range (cpus = " + std::to_string(cfg_.cpus) + ")");
    if (bytes == 0) return Time::zero();
    if (bytes - 1 > std::numeric_limits<std::uint64_t>::max() - addr)
        throw std::invalid_argument("CacheModel::touch: range [" + std::to_string(addr) + ", +" +
                                    std::to_string(bytes) + ") wraps past the end of the address space");
    const std::uint64_t first = addr >> line_shift_;
    const std::uint64_t last = (addr + (bytes - 1)) >> line_shift_;
    CacheCounters& c = phases_[cur_];
    Time sum = access_line(c, cpu, first, write);
    for (std::uint64_t line = first; line != last;) sum += access_line(c, cpu, ++line, write);
    return sum;
}

// Everything else; l1_slot is the fast path's lookup in the nearest private level (if any).
Time CacheModel::access_slow(CacheCounters& c, std::uint32_t cpu, std::uint64_t line, bool write,
                             std::uint32_t stamp, std::size_t l1_slot) {
    const std::size_t np = priv_.size();

    for (std::size_t i = 0; i < np; ++i) {
        Level& l = priv_[i];
        CacheLevelCounters& lc = c.levels[i];
        ++lc.accesses;
        const std::size_t slot = i == 0 ? l1_slot : find(l, cpu * l.slots + l.set_offset(line), line);
        if (slot == kNotFound) {
            ++lc.misses;
            continue;
        }
        ++lc.hits;
        l.ages[slot] = stamp;
        const std::uint32_t ls = l.llc_slot[slot];
        for (std::size_t k = i; k-- > 0;) fill_private(k, cpu, line, ls, stamp);
        Time lat = l.hit;
        // Upgrade: the line is ours but maybe shared; a write must own it.
        if (write && owner_[ls] != cpu) lat = std::max(lat, claim(c, cpu, ls, line));
        return lat;
    }

    CacheLevelCounters& lc = c.levels[np];
    ++lc.accesses;
    const std::size_t base = llc_.set_offset(line);
    std::size_t slot = find(llc_, base, line);
    Time lat;
    if (slot != kNotFound) {
        ++lc.hits;
        llc_.ages[slot] = stamp;
        lat = llc_.hit;
        if (np == 0) return lat;
        // By the exact directory, an owner is never `cpu` here: cpu missed its private levels.
        if (owner_[slot] != kNoOwner) {
            ++c.coherence_misses;
            lat = transfer(owner_[slot], cpu);
            if (write) {
                claim(c, cpu, slot, line);
            } else {
                owner_[slot] = kNoOwner;
                sharers_[slot * words_ + cpu / 64] |= std::uint64_t{1} << (cpu % 64);
            }
        } else if (write) {
            lat = std::max(lat, claim(c, cpu, slot, line));
        } else {
            sharers_[slot * words_ + cpu / 64] |= std::uint64_t{1} << (cpu % 64);
        }
    } else {
        ++lc.misses;
        ++c.memory_accesses;
        lat = cfg_.memory_latency;
        slot = victim(llc_, base);
        if (np != 0 && llc_.valid(slot)) back_invalidate(c, slot);
        llc_.set_tag(slot, line);
        llc_.ages[slot] = stamp;
        if (np == 0) return lat;
        sharers_[slot * words_ + cpu / 64] = std::uint64_t{1} << (cpu % 64);
        owner_[slot] = write ? static_cast<std::uint16_t>(cpu) : kNoOwner;
    }
    for (std::size_t k = np; k-- > 0;)
        fill_private(k, cpu, line, static_cast<std::uint32_t>(slot), stamp);
    return lat;
}

// Put `line` (not present in level k of cpu) into level k of cpu, evicting if needed.
void CacheModel::fill_private(std::size_t k, std::uint32_t cpu, std::uint64_t line,
                              std::uint32_t llc_slot, std::uint32_t stamp) {
    Level& l = priv_[k];
    const std::size_t slot = victim(l, cpu * l.slots + l.set_offset(line));
    if (l.valid(slot)) evict_private(k, cpu, slot);
    l.set_tag(slot, line);
    l.ages[slot] = stamp;
    l.llc_slot[slot] = llc_slot;
}

// Evict the line at `slot` of private level k of cpu: inclusion removes it from the levels above;
// leaving the last private level removes cpu from the directory (a modified line is written back).
void CacheModel::evict_private(std::size_t k, std::uint32_t cpu, std::size_t slot) {
    Level& l = priv_[k];
    const std::uint64_t line = l.tag(slot);
    const std::uint32_t ls = l.llc_slot[slot];
    l.clear(slot);
    invalidate_private(cpu, line, k);
    if (k + 1 == priv_.size()) {
        sharers_[ls * words_ + cpu / 64] &= ~(std::uint64_t{1} << (cpu % 64));
        if (owner_[ls] == cpu) owner_[ls] = kNoOwner;
    }
}

// Drop `line` from private levels [0, below) of cpu; true if any held it.
bool CacheModel::invalidate_private(std::uint32_t cpu, std::uint64_t line, std::size_t below) {
    bool found = false;
    for (std::size_t j = 0; j < below; ++j) {
        Level& l = priv_[j];
        const std::size_t slot = find(l, cpu * l.slots + l.set_offset(line), line);
        if (slot != kNotFound) {
            l.clear(slot);
            found = true;
        }
    }
    return found;
}

// Write by cpu: invalidate every other sharer (counted), make cpu the sole sharer and the owner.
// True if another CPU had to be invalidated.
// Makes cpu the line's sole sharer and owner; returns the invalidations' latency (zero if there
// were none).
Time CacheModel::claim(CacheCounters& c, std::uint32_t cpu, std::size_t llc_slot, std::uint64_t line) {
    std::uint64_t* words = sharers_.data() + llc_slot * words_;
    Time lat = Time::zero();
    for (std::size_t w = 0; w < words_; ++w) {
        std::uint64_t bits = words[w];
        if (w == cpu / 64) bits &= ~(std::uint64_t{1} << (cpu % 64));
        while (bits != 0) {
            const auto s = static_cast<std::uint32_t>(w * 64 + std::countr_zero(bits));
            bits &= bits - 1;
            invalidate_private(s, line, priv_.size());
            ++c.invalidations;
            lat = std::max(lat, transfer(s, cpu));
        }
        words[w] = 0;
    }
    words[cpu / 64] = std::uint64_t{1} << (cpu % 64);
    owner_[llc_slot] = static_cast<std::uint16_t>(cpu);
    return lat;
}

// The shared level evicts the line at llc_slot: remove it from every sharer's private levels.
void CacheModel::back_invalidate(CacheCounters& c, std::size_t llc_slot) {
    const std::uint64_t line = llc_.tag(llc_slot);
    std::uint64_t* words = sharers_.data() + llc_slot * words_;
    for (std::size_t w = 0; w < words_; ++w) {
        std::uint64_t bits = words[w];
        while (bits != 0) {
            const auto s = static_cast<std::uint32_t>(w * 64 + std::countr_zero(bits));
            bits &= bits - 1;
            invalidate_private(s, line, priv_.size());
            ++c.back_invalidations;
        }
        words[w] = 0;
    }
    owner_[llc_slot] = kNoOwner;
}

std::string CacheModel::check_invariants() const {
    const std::size_t np = priv_.size();
    auto where = [&](std::size_t level, std::uint32_t cpu, std::size_t slot) {
        return cfg_.levels[level].name + " cpu " + std::to_string(cpu) + " slot " +
               std::to_string(slot) + ": ";
    };
    // Tags in the right set, no duplicates, stamps not from the future.
    auto check_level = [&](const Level& l, std::size_t level, std::size_t instances) -> std::string {
        for (std::size_t inst = 0; inst < instances; ++inst) {
            for (std::size_t base = inst * l.slots; base < (inst + 1) * l.slots; base += l.ways) {
                for (std::size_t s = base; s < base + l.ways; ++s) {
                    if (!l.valid(s)) continue;
                    const std::uint64_t t = l.tag(s);
                    const auto cpu = static_cast<std::uint32_t>(inst);
                    if (inst * l.slots + l.set_offset(t) != base)
                        return where(level, cpu, s) + "line " + std::to_string(t) + " in the wrong set";
                    if (l.ages[s] == 0 || l.ages[s] > clock_)
                        return where(level, cpu, s) + "bad LRU stamp " + std::to_string(l.ages[s]);
                    for (std::size_t s2 = s + 1; s2 < base + l.ways; ++s2) {
                        if (!l.valid(s2)) continue;
                        if (l.tag(s2) == t)
                            return where(level, cpu, s) + "line " + std::to_string(t) + " twice in a set";
                        if (l.ages[s2] == l.ages[s])
                            return where(level, cpu, s) + "equal LRU stamps in a set";
                    }
                }
            }
        }
        return {};
    };
    for (std::size_t k = 0; k < np; ++k)
        if (auto e = check_level(priv_[k], k, cfg_.cpus); !e.empty()) return e;
    if (auto e = check_level(llc_, np, 1); !e.empty()) return e;
    if (np == 0) return {};

    // Private lines: inclusion in the levels below and in the shared level, directory membership.
    for (std::size_t k = 0; k < np; ++k) {
        const Level& l = priv_[k];
        for (std::uint32_t cpu = 0; cpu < cfg_.cpus; ++cpu) {
            for (std::size_t s = cpu * l.slots; s < (cpu + 1) * l.slots; ++s) {
                if (!l.valid(s)) continue;
                const std::uint64_t t = l.tag(s);
                const std::size_t ls = l.llc_slot[s];
                if (ls >= llc_.slots || !llc_.valid(ls) || llc_.tag(ls) != t)
                    return where(k, cpu, s) + "line " + std::to_string(t) +
                           " not at its recorded shared-level slot (inclusion broken)";
                if (!is_sharer(ls, cpu))
                    return where(k, cpu, s) + "line " + std::to_string(t) + " but cpu not a sharer";
                for (std::size_t j = k + 1; j < np; ++j) {
                    const Level& lj = priv_[j];
                    const std::size_t sj = find(lj, cpu * lj.slots + lj.set_offset(t), t);
                    if (sj == kNotFound)
                        return where(k, cpu, s) + "line " + std::to_string(t) + " missing from " +
                               cfg_.levels[j].name + " (inclusion broken)";
                    if (lj.llc_slot[sj] != ls)
                        return where(k, cpu, s) + "shared-level slot differs from " + cfg_.levels[j].name;
                }
            }
        }
    }
    // Directory: sharer bit iff the last private level holds the line; an owner is the sole sharer.
    const Level& last = priv_[np - 1];
    for (std::size_t ls = 0; ls < llc_.slots; ++ls) {
        const bool valid = llc_.valid(ls);
        const std::uint64_t t = llc_.tag(ls);
        const std::uint16_t own = owner_[ls];
        if (!valid && own != kNoOwner) return where(np, own, ls) + "empty slot has an owner";
        for (std::uint32_t cpu = 0; cpu < cfg_.cpus; ++cpu) {
            const bool bit = is_sharer(ls, cpu);
            const bool held = valid && find(last, cpu * last.slots + last.set_offset(t), t) != kNotFound;
            if (bit != held)
                return where(np, cpu, ls) + (bit ? "stale sharer bit" : "missing sharer bit");
            if (own != kNoOwner && cpu != own && bit)
                return where(np, cpu, ls) + "shared with cpu " + std::to_string(cpu) +
                       " while owned by cpu " + std::to_string(own);
        }
        if (own != kNoOwner && (own >= cfg_.cpus || !is_sharer(ls, own)))
            return where(np, own, ls) + "owner is not a sharer";
    }
    return {};
}

}  // namespace kvmsim::engine
