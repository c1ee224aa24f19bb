#include "sim/engine/cache.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <new>
#include <stdexcept>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kvmsim::engine {

namespace {

constexpr std::uint32_t kNoOwner = 0xFFFF;
constexpr std::uint32_t kMaxCpus = 1024;
// Positions in the shared level are kept in 31 bits by the private levels (aux; the top bit is
// the nearest level's "owned" hint).
constexpr std::uint64_t kMaxWords = (std::uint64_t{1} << 31) - 1;
constexpr std::size_t kBlockAlign = 64;

// Words per set block: a power of two up to one 64-byte line, else whole lines.
std::size_t block_stride(std::size_t words) {
    if (words <= 16) return std::bit_ceil(words);
    return (words + 15) / 16 * 16;
}

[[noreturn]] void bad_config(const std::string& what) {
    throw std::invalid_argument("CacheModel: invalid configuration: " + what);
}

std::string level_label(std::size_t i, const CacheLevelConfig& l) {
    return "levels[" + std::to_string(i) + "] (\"" + l.name + "\")";
}

}  // namespace

void CacheModel::Words::Free::operator()(std::uint32_t* p) const {
    ::operator delete[](p, std::align_val_t{kBlockAlign});
}

void CacheModel::Words::reset(std::size_t n) {
    p_.reset(static_cast<std::uint32_t*>(::operator new[](n * sizeof(std::uint32_t), std::align_val_t{kBlockAlign})));
    n_ = n;
    std::fill_n(p_.get(), n, 0U);
}

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
        const bool shared = (i + 1 == n);
        // Fields per way: tag halves and age, plus the aux word (private levels, or a shared
        // level with a directory) and the sharer words.
        const std::size_t sharer_words = (cfg_.cpus + 31) / 32;
        const std::size_t fields = !shared ? 4 : n > 1 ? 4 + sharer_words : 3;
        const std::uint64_t sets = lc.size_bytes / set_bytes;
        const std::size_t stride = block_stride(fields * lc.ways);
        if (lc.ways > kMaxWords || sets > kMaxWords / stride)
            bad_config(label + ": " + std::to_string(lc.size_bytes / cfg_.line_bytes) + " lines in " +
                       std::to_string(sets) + " sets of " + std::to_string(stride) +
                       " metadata words, more than the " + std::to_string(kMaxWords) + " words supported");

        Level l;
        l.ways = lc.ways;
        l.sets = sets;
        l.sets_pow2 = std::has_single_bit(l.sets);
        l.set_mask = l.sets_pow2 ? l.sets - 1 : 0;
        l.stride = stride;
        l.inst_words = static_cast<std::size_t>(sets) * stride;
        l.off_hi = lc.ways;
        l.off_age = 2 * std::size_t{lc.ways};
        l.off_aux = 3 * std::size_t{lc.ways};
        l.off_sh = 4 * std::size_t{lc.ways};
        l.hit = lc.hit_latency;
        l.data.reset(shared ? l.inst_words : l.inst_words * cfg_.cpus);
        if (shared) {
            llc_ = std::move(l);
        } else {
            priv_.push_back(std::move(l));
        }
    }
    if (!priv_.empty()) words_ = (cfg_.cpus + 31) / 32;
    for (Level& l : priv_) empty_level(l, false);
    empty_level(llc_, true);
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

// Every way empty, no owner, no sharer.
void CacheModel::empty_level(Level& l, bool shared) {
    std::uint32_t* d = l.data.data();
    std::fill_n(d, l.data.size(), 0U);
    for (std::size_t base = 0; base < l.data.size(); base += l.stride) {
        std::fill_n(d + base, 2 * std::size_t{l.ways}, kEmptyHi);  // tag_lo, tag_hi
        if (shared && !priv_.empty()) std::fill_n(d + base + l.off_aux, l.ways, kNoOwner);
    }
}

void CacheModel::flush_all() {
    for (Level& l : priv_) empty_level(l, false);
    empty_level(llc_, true);
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
        for (std::size_t base = 0; base < l.data.size(); base += l.stride) {
            order.clear();
            for (std::size_t s = base; s < base + l.ways; ++s)
                if (l.valid(s)) order.emplace_back(l.age(s), s);
            std::sort(order.begin(), order.end());
            std::uint32_t rank = 0;
            for (const auto& [age, s] : order) l.age(s) = ++rank;
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
    const std::uint32_t* lo = l.data.data() + base;
    const std::uint32_t* hi = lo + l.off_hi;
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
    const std::uint32_t* a = l.data.data() + base + l.off_age;
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
    return (llc_.data.data()[llc_slot + llc_.off_sh + (cpu / 32) * std::size_t{llc_.ways}] >> (cpu % 32)) & 1U;
}

// Fast path: a hit in the nearest private level that needs no coherence action.
inline Time CacheModel::access_line(CacheCounters& c, std::uint32_t cpu, std::uint64_t line, bool write) {
    const std::uint32_t stamp = next_stamp();
    std::size_t l1_slot = kNotFound;
    if (!priv_.empty()) [[likely]] {
        Level& l = priv_[0];
        l1_slot = find(l, cpu * l.inst_words + l.block(line), line);
        if (l1_slot != kNotFound && (!write || (l.aux(l1_slot) & kOwnedHint) != 0)) [[likely]] {
            CacheLevelCounters& lc = c.levels[0];
            ++lc.accesses;
            ++lc.hits;
            l.age(l1_slot) = stamp;
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

// Hints only (no effect on results): ask the host for every line of a set's block, so that the
// misses on the blocks an access will need overlap instead of following one another.
inline void CacheModel::prefetch(const Level& l, std::size_t base) {
    const std::uint32_t* p = l.data.data() + base;
    for (std::size_t w = 0; w < l.stride; w += 16) __builtin_prefetch(p + w);
}

// Every private level of cpu that may hold `line` (claim and back_invalidate look them up).
inline void CacheModel::prefetch_private(std::uint32_t cpu, std::uint64_t line) {
    for (const Level& l : priv_) __builtin_prefetch(l.data.data() + cpu * l.inst_words + l.block(line));
}

// Everything else; l1_slot is the fast path's lookup in the nearest private level (if any).
Time CacheModel::access_slow(CacheCounters& c, std::uint32_t cpu, std::uint64_t line, bool write,
                             std::uint32_t stamp, std::size_t l1_slot) {
    const std::size_t np = priv_.size();
    // The nearest level missed (or needs an upgrade): the lower private levels' and the shared
    // level's sets are likely needed; their host misses overlap.
    if (l1_slot == kNotFound) {
        for (std::size_t i = 1; i < np; ++i) prefetch(priv_[i], cpu * priv_[i].inst_words + priv_[i].block(line));
        prefetch(llc_, llc_.block(line));
    }

    for (std::size_t i = 0; i < np; ++i) {
        Level& l = priv_[i];
        CacheLevelCounters& lc = c.levels[i];
        ++lc.accesses;
        const std::size_t slot = i == 0 ? l1_slot : find(l, cpu * l.inst_words + l.block(line), line);
        if (slot == kNotFound) {
            ++lc.misses;
            continue;
        }
        ++lc.hits;
        l.age(slot) = stamp;
        const std::uint32_t ls = l.aux(slot) & kPosMask;
        // A write leaves cpu the owner (below): its nearest level gets the hint. (claim touches
        // only other CPUs' copies, so it commutes with these fills.)
        const std::uint32_t hint = write ? kOwnedHint : 0;
        if (i == 0) {
            l.aux(slot) |= hint;
        } else {
            for (std::size_t k = i; k-- > 1;) fill_private(k, cpu, line, ls, stamp);
            fill_private(0, cpu, line, ls | hint, stamp);
        }
        Time lat = l.hit;
        // Upgrade: the line is ours but maybe shared; a write must own it.
        if (write && owner(ls) != cpu) lat = std::max(lat, claim(c, cpu, ls, line));
        return lat;
    }

    CacheLevelCounters& lc = c.levels[np];
    ++lc.accesses;
    const std::size_t base = llc_.block(line);
    std::size_t slot = find(llc_, base, line);
    Time lat;
    if (slot != kNotFound) {
        ++lc.hits;
        llc_.age(slot) = stamp;
        lat = llc_.hit;
        if (np == 0) return lat;
        // By the exact directory, an owner is never `cpu` here: cpu missed its private levels.
        if (owner(slot) != kNoOwner) {
            ++c.coherence_misses;
            lat = transfer(owner(slot), cpu);
            if (write) {
                claim(c, cpu, slot, line);
            } else {
                clear_owned_hint(owner(slot), line);
                owner(slot) = kNoOwner;
                *sharer_word(slot, cpu) |= std::uint32_t{1} << (cpu % 32);
            }
        } else if (write) {
            lat = std::max(lat, claim(c, cpu, slot, line));
        } else {
            *sharer_word(slot, cpu) |= std::uint32_t{1} << (cpu % 32);
        }
    } else {
        ++lc.misses;
        ++c.memory_accesses;
        lat = cfg_.memory_latency;
        slot = victim(llc_, base);
        if (np != 0 && llc_.valid(slot)) back_invalidate(c, slot);
        llc_.set_tag(slot, line);
        llc_.age(slot) = stamp;
        if (np == 0) return lat;
        // back_invalidate (or an empty way) left every sharer word zero.
        *sharer_word(slot, cpu) = std::uint32_t{1} << (cpu % 32);
        owner(slot) = write ? cpu : kNoOwner;
    }
    // A write leaves cpu the owner (claim, or the fill above).
    const std::uint32_t aux = static_cast<std::uint32_t>(slot);
    for (std::size_t k = np; k-- > 1;) fill_private(k, cpu, line, aux, stamp);
    fill_private(0, cpu, line, write ? aux | kOwnedHint : aux, stamp);
    return lat;
}

// Put `line` (not present in level k of cpu) into level k of cpu, evicting if needed.
void CacheModel::fill_private(std::size_t k, std::uint32_t cpu, std::uint64_t line,
                              std::uint32_t llc_slot, std::uint32_t stamp) {
    Level& l = priv_[k];
    const std::size_t slot = victim(l, cpu * l.inst_words + l.block(line));
    if (l.valid(slot)) evict_private(k, cpu, slot);
    l.set_tag(slot, line);
    l.age(slot) = stamp;
    l.aux(slot) = llc_slot;
}

// Evict the line at `slot` of private level k of cpu: inclusion removes it from the levels above;
// leaving the last private level removes cpu from the directory (a modified line is written back).
void CacheModel::evict_private(std::size_t k, std::uint32_t cpu, std::size_t slot) {
    Level& l = priv_[k];
    const std::uint64_t line = l.tag(slot);
    const std::uint32_t ls = l.aux(slot) & kPosMask;
    l.clear(slot);
    invalidate_private(cpu, line, k);
    if (k + 1 == priv_.size()) {
        *sharer_word(ls, cpu) &= ~(std::uint32_t{1} << (cpu % 32));
        if (owner(ls) == cpu) owner(ls) = kNoOwner;
    }
}

// Drop `line` from private levels [0, below) of cpu; true if any held it.
bool CacheModel::invalidate_private(std::uint32_t cpu, std::uint64_t line, std::size_t below) {
    bool found = false;
    for (std::size_t j = 0; j < below; ++j) {
        Level& l = priv_[j];
        const std::size_t slot = find(l, cpu * l.inst_words + l.block(line), line);
        if (slot != kNotFound) {
            l.clear(slot);
            found = true;
        }
    }
    return found;
}

// `cpu` stops owning `line` but keeps its copies: its nearest level's hint must not claim it.
void CacheModel::clear_owned_hint(std::uint32_t cpu, std::uint64_t line) {
    Level& l = priv_[0];
    const std::size_t slot = find(l, cpu * l.inst_words + l.block(line), line);
    if (slot != kNotFound) l.aux(slot) &= kPosMask;
}

// Write by cpu: invalidate every other sharer (counted), make cpu the sole sharer and the owner.
// True if another CPU had to be invalidated.
// Makes cpu the line's sole sharer and owner; returns the invalidations' latency (zero if there
// were none).
Time CacheModel::claim(CacheCounters& c, std::uint32_t cpu, std::size_t llc_slot, std::uint64_t line) {
    std::uint32_t* words = llc_.data.data() + llc_slot + llc_.off_sh;
    const std::size_t step = llc_.ways;
    for (std::size_t w = 0; w < words_; ++w) {
        for (std::uint32_t bits = words[w * step]; bits != 0; bits &= bits - 1) {
            const auto s = static_cast<std::uint32_t>(w * 32 + std::countr_zero(bits));
            if (s != cpu) prefetch_private(s, line);
        }
    }
    Time lat = Time::zero();
    for (std::size_t w = 0; w < words_; ++w) {
        std::uint32_t bits = words[w * step];
        if (w == cpu / 32) bits &= ~(std::uint32_t{1} << (cpu % 32));
        while (bits != 0) {
            const auto s = static_cast<std::uint32_t>(w * 32 + std::countr_zero(bits));
            bits &= bits - 1;
            invalidate_private(s, line, priv_.size());
            ++c.invalidations;
            lat = std::max(lat, transfer(s, cpu));
        }
        words[w * step] = 0;
    }
    words[(cpu / 32) * step] = std::uint32_t{1} << (cpu % 32);
    owner(llc_slot) = cpu;
    return lat;
}

// The shared level evicts the line at llc_slot: remove it from every sharer's private levels.
void CacheModel::back_invalidate(CacheCounters& c, std::size_t llc_slot) {
    const std::uint64_t line = llc_.tag(llc_slot);
    std::uint32_t* words = llc_.data.data() + llc_slot + llc_.off_sh;
    const std::size_t step = llc_.ways;
    for (std::size_t w = 0; w < words_; ++w)
        for (std::uint32_t bits = words[w * step]; bits != 0; bits &= bits - 1)
            prefetch_private(static_cast<std::uint32_t>(w * 32 + std::countr_zero(bits)), line);
    for (std::size_t w = 0; w < words_; ++w) {
        std::uint32_t bits = words[w * step];
        while (bits != 0) {
            const auto s = static_cast<std::uint32_t>(w * 32 + std::countr_zero(bits));
            bits &= bits - 1;
            invalidate_private(s, line, priv_.size());
            ++c.back_invalidations;
        }
        words[w * step] = 0;
    }
    owner(llc_slot) = kNoOwner;
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
            for (std::size_t base = inst * l.inst_words; base < (inst + 1) * l.inst_words; base += l.stride) {
                for (std::size_t s = base; s < base + l.ways; ++s) {
                    if (!l.valid(s)) continue;
                    const std::uint64_t t = l.tag(s);
                    const auto cpu = static_cast<std::uint32_t>(inst);
                    if (inst * l.inst_words + l.block(t) != base)
                        return where(level, cpu, s) + "line " + std::to_string(t) + " in the wrong set";
                    if (l.age(s) == 0 || l.age(s) > clock_)
                        return where(level, cpu, s) + "bad LRU stamp " + std::to_string(l.age(s));
                    for (std::size_t s2 = s + 1; s2 < base + l.ways; ++s2) {
                        if (!l.valid(s2)) continue;
                        if (l.tag(s2) == t)
                            return where(level, cpu, s) + "line " + std::to_string(t) + " twice in a set";
                        if (l.age(s2) == l.age(s))
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
            for (std::size_t base = cpu * l.inst_words; base < (cpu + 1) * l.inst_words; base += l.stride) {
                for (std::size_t s = base; s < base + l.ways; ++s) {
                    if (!l.valid(s)) continue;
                    const std::uint64_t t = l.tag(s);
                    const std::size_t ls = l.aux(s) & kPosMask;
                    if (l.aux(s) & kOwnedHint) {
                        if (k != 0 || llc_.aux(ls) != cpu)
                            return where(k, cpu, s) + "line " + std::to_string(t) +
                                   " has the owned hint but cpu is not its owner";
                    }
                    if (ls >= llc_.data.size() || ls % llc_.stride >= llc_.ways || !llc_.valid(ls) ||
                        llc_.tag(ls) != t)
                        return where(k, cpu, s) + "line " + std::to_string(t) +
                               " not at its recorded shared-level slot (inclusion broken)";
                    if (!is_sharer(ls, cpu))
                        return where(k, cpu, s) + "line " + std::to_string(t) + " but cpu not a sharer";
                    for (std::size_t j = k + 1; j < np; ++j) {
                        const Level& lj = priv_[j];
                        const std::size_t sj = find(lj, cpu * lj.inst_words + lj.block(t), t);
                        if (sj == kNotFound)
                            return where(k, cpu, s) + "line " + std::to_string(t) + " missing from " +
                                   cfg_.levels[j].name + " (inclusion broken)";
                        if ((lj.aux(sj) & kPosMask) != ls)
                            return where(k, cpu, s) + "shared-level slot differs from " + cfg_.levels[j].name;
                    }
                }
            }
        }
    }
    // Directory: sharer bit iff the last private level holds the line; an owner is the sole sharer.
    const Level& last = priv_[np - 1];
    for (std::size_t base = 0; base < llc_.data.size(); base += llc_.stride) {
        for (std::size_t ls = base; ls < base + llc_.ways; ++ls) {
            const bool valid = llc_.valid(ls);
            const std::uint64_t t = llc_.tag(ls);
            const std::uint32_t own = llc_.aux(ls);
            if (!valid && own != kNoOwner) return where(np, own, ls) + "empty slot has an owner";
            for (std::uint32_t cpu = 0; cpu < cfg_.cpus; ++cpu) {
                const bool bit = is_sharer(ls, cpu);
                const bool held = valid && find(last, cpu * last.inst_words + last.block(t), t) != kNotFound;
                if (bit != held)
                    return where(np, cpu, ls) + (bit ? "stale sharer bit" : "missing sharer bit");
                if (own != kNoOwner && cpu != own && bit)
                    return where(np, cpu, ls) + "shared with cpu " + std::to_string(cpu) +
                           " while owned by cpu " + std::to_string(own);
            }
            if (own != kNoOwner && (own >= cfg_.cpus || !is_sharer(ls, own)))
                return where(np, own, ls) + "owner is not a sharer";
        }
    }
    return {};
}

}  // namespace kvmsim::engine
