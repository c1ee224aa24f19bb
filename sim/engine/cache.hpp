// CPU cache hierarchy model: set-associative levels with LRU replacement, private levels per CPU
// and one shared, inclusive last level that doubles as a coherence directory (sharer bitset and
// modified owner per line). MMU models "pay" for touching memory through `CacheModel::touch`,
// which returns the latency of the access and counts hits, misses, coherence misses and
// invalidations per phase, so that a before/after difference comes from simulated accesses.
//
// Model, per accessed line (see cache.cpp for the details):
//  - lookup order: the CPU's private levels in order, then the shared level, then memory; every
//    level looked at counts an access and either a hit or a miss; the latency is the hit latency
//    of the level that hits (memory_latency if none does);
//  - the line is filled into every level above the one that hit; the hierarchy is inclusive
//    (L1 within L2 within LLC): evicting a line from a level removes it from the levels above it
//    of the same CPU, and evicting it from the shared level removes it from every sharer's private
//    levels (counted as back_invalidations, once per CPU);
//  - the directory is exact: a CPU is a sharer of an LLC line iff its last private level holds it;
//  - a private miss on a line another CPU holds modified is a coherence miss (remote_latency, or
//    cross_socket_latency when that CPU is on another socket);
//    a read then leaves both CPUs sharers and the line clean;
//  - a write invalidates the line in every other sharer (counted in invalidations, once per CPU)
//    and makes the writer the sole sharer and the owner; if anybody was invalidated the latency is
//    at least remote_latency (cross_socket_latency if one of them is on another socket). A write
//    to a line held by no other CPU is silent (MESI E -> M).
//  - with a single (shared) level there is no private state and no coherence tracking.
//
// Determinism: no unordered containers, no pointer-dependent behaviour; sharers are visited in
// increasing CPU order, ties in replacement go to the lowest way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sim/engine/time.hpp"

namespace kvmsim::engine {

struct CacheLevelConfig {
    std::string name;              // "L1d", "L2", "LLC"
    std::uint64_t size_bytes = 0;  // total size of one instance (per CPU for private levels)
    std::uint32_t ways = 0;        // associativity
    Time hit_latency;              // latency of a hit at this level
};

struct CacheConfig {
    std::uint32_t cpus = 1;                // host CPUs (1..1024)
    std::uint32_t line_bytes = 64;         // power of two, at least 8
    std::vector<CacheLevelConfig> levels;  // private levels first (per CPU); the LAST level is shared
    Time memory_latency;                   // miss in every level
    Time remote_latency;                   // cache-to-cache transfer of a modified line, or a write
                                           // that must invalidate other CPUs' copies (RFO/upgrade)
    // Sockets: CPUs are numbered socket by socket, cpus_per_socket each (0: one socket). A transfer
    // or an invalidation that crosses sockets costs cross_socket_latency instead of remote_latency.
    std::uint32_t cpus_per_socket = 0;
    Time cross_socket_latency;
};

struct CacheLevelCounters {
    std::uint64_t accesses = 0;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    bool operator==(const CacheLevelCounters&) const = default;
};

struct CacheCounters {
    std::vector<CacheLevelCounters> levels;  // one per configured level, same order
    std::uint64_t coherence_misses = 0;      // private miss served from another CPU's modified copy
    std::uint64_t invalidations = 0;         // private copies invalidated in other CPUs by writes
    std::uint64_t back_invalidations = 0;    // private copies invalidated by shared-level evictions
    std::uint64_t memory_accesses = 0;       // misses in every level
    void merge(const CacheCounters& other);  // add (levels grow to the longer of the two)
    bool operator==(const CacheCounters&) const = default;
};

class CacheModel {
public:
    // Throws std::invalid_argument naming the offending field for a bad configuration.
    explicit CacheModel(CacheConfig cfg);

    // Touch [addr, addr+bytes) from `cpu`; every line covered is accessed once (bytes == 0 covers
    // no line and returns zero). Returns the summed latency. Throws std::out_of_range if
    // cpu >= cpus and std::invalid_argument if the range wraps past the end of the address space.
    Time touch(std::uint32_t cpu, std::uint64_t addr, std::uint64_t bytes, bool write);

    // Counters from now on accumulate into slot `phase` (slots grow on demand; default phase 0).
    void begin_phase(std::size_t phase);
    // Zero counters (with one entry per level) for a phase never used.
    const CacheCounters& phase_counters(std::size_t phase) const;
    CacheCounters total() const;  // merge of all phases
    std::size_t phase_count() const;
    std::size_t current_phase() const { return cur_; }
    const CacheConfig& config() const;

    void flush_all();  // empty every cache (counters are kept)

    // Full consistency check of tags, inclusion, directory and LRU stamps: an empty string if
    // consistent, else a description of the first violation. O(size of all caches); for tests
    // and debug checks, never called by the model itself.
    std::string check_invariants() const;

private:
    friend struct CacheModelTestAccess;  // defined by unit tests only

    static constexpr std::size_t kNotFound = ~std::size_t{0};
    // Private levels' aux word: the shared-level position, and in the nearest level a hint bit
    // set only while the CPU owns the line (so a write hit needs no directory look-up). The bit
    // may be clear for an owned line (that write takes the slow path, with the same result).
    static constexpr std::uint32_t kOwnedHint = std::uint32_t{1} << 31;
    static constexpr std::uint32_t kPosMask = kOwnedHint - 1;
    // High half of an empty way's tag: line numbers are < 2^61 (line_bytes >= 8), so it never
    // matches a line.
    static constexpr std::uint32_t kEmptyHi = ~std::uint32_t{0};

    // 32-bit words on 64-byte boundaries (only the speed depends on the alignment).
    class Words {
    public:
        void reset(std::size_t n);
        std::uint32_t* data() { return p_.get(); }
        const std::uint32_t* data() const { return p_.get(); }
        std::size_t size() const { return n_; }

    private:
        struct Free {
            void operator()(std::uint32_t* p) const;
        };
        std::unique_ptr<std::uint32_t[], Free> p_;
        std::size_t n_ = 0;
    };

    // One level; private levels hold `cfg.cpus` instances back to back. Each set is one block of
    // `stride` words (a power of two up to 16 words, else a multiple of 16: 64-byte aligned),
    // so that a lookup, its LRU update and its directory entry touch adjacent host cache lines
    // rather than one line in each of several arrays. A way's fields sit W words apart:
    //   [0, W)        tag_lo: low half of the line number
    //   [W, 2W)       tag_hi: high half, kEmptyHi when the way is empty
    //   [2W, 3W)      age: LRU stamp of the last use (>= 1 when valid, 0 when empty)
    //   [3W, 4W)      aux: private levels: the line's position in the shared level (and
    //                 kOwnedHint);
    //                 shared level (with private levels): the owner CPU, or kNoOwner
    //   [(4+j)W, ...) shared level: word j of the sharer bitset (CPUs 32j..32j+31)
    // A slot ("position") is the index of its tag_lo word: block offset + way. Lines are split
    // in 32-bit halves so that a set's low halves are compared 4 at a time.
    struct Level {
        std::uint64_t sets = 0;
        std::uint64_t set_mask = 0;  // sets - 1 when sets is a power of two
        bool sets_pow2 = false;
        std::uint32_t ways = 0;
        std::size_t stride = 0;      // words per set block
        std::size_t inst_words = 0;  // words per instance: sets * stride
        std::size_t off_hi = 0, off_age = 0, off_aux = 0, off_sh = 0;  // W, 2W, 3W, 4W
        Time hit;
        Words data;

        std::size_t block(std::uint64_t line) const {
            return static_cast<std::size_t>(sets_pow2 ? (line & set_mask) : (line % sets)) * stride;
        }
        std::uint32_t& lo(std::size_t s) { return data.data()[s]; }
        std::uint32_t& hi(std::size_t s) { return data.data()[s + off_hi]; }
        std::uint32_t& age(std::size_t s) { return data.data()[s + off_age]; }
        std::uint32_t& aux(std::size_t s) { return data.data()[s + off_aux]; }
        std::uint32_t hi(std::size_t s) const { return data.data()[s + off_hi]; }
        std::uint32_t age(std::size_t s) const { return data.data()[s + off_age]; }
        std::uint32_t aux(std::size_t s) const { return data.data()[s + off_aux]; }
        bool valid(std::size_t s) const { return hi(s) != kEmptyHi; }
        std::uint64_t tag(std::size_t s) const {
            return (std::uint64_t{hi(s)} << 32) | data.data()[s];
        }
        void set_tag(std::size_t s, std::uint64_t line) {
            lo(s) = static_cast<std::uint32_t>(line);
            hi(s) = static_cast<std::uint32_t>(line >> 32);
        }
        void clear(std::size_t s) {
            lo(s) = kEmptyHi;
            hi(s) = kEmptyHi;
            age(s) = 0;  // an empty way is the oldest (victim() relies on it)
        }
    };

    Time access_line(CacheCounters& c, std::uint32_t cpu, std::uint64_t line, bool write);
    Time access_slow(CacheCounters& c, std::uint32_t cpu, std::uint64_t line, bool write,
                     std::uint32_t stamp, std::size_t l1_slot);
    Time touch_range(std::uint32_t cpu, std::uint64_t addr, std::uint64_t bytes, bool write);
    std::uint32_t next_stamp();
    void renormalize_stamps();
    std::size_t find(const Level& l, std::size_t base, std::uint64_t line) const;
    static std::uint64_t match_mask(const std::uint32_t* p, std::uint32_t n, std::uint32_t key);
    static std::size_t victim(const Level& l, std::size_t base);
    void fill_private(std::size_t k, std::uint32_t cpu, std::uint64_t line, std::uint32_t llc_slot,
                      std::uint32_t stamp);
    void evict_private(std::size_t k, std::uint32_t cpu, std::size_t slot);
    bool invalidate_private(std::uint32_t cpu, std::uint64_t line, std::size_t below);
    void clear_owned_hint(std::uint32_t cpu, std::uint64_t line);
    static void prefetch(const Level& l, std::size_t base);
    void prefetch_private(std::uint32_t cpu, std::uint64_t line);
    Time claim(CacheCounters& c, std::uint32_t cpu, std::size_t llc_slot, std::uint64_t line);
    Time transfer(std::uint32_t from, std::uint32_t to) const {
        return cfg_.cpus_per_socket != 0 && from / cfg_.cpus_per_socket != to / cfg_.cpus_per_socket
                   ? cfg_.cross_socket_latency
                   : cfg_.remote_latency;
    }
    void back_invalidate(CacheCounters& c, std::size_t llc_slot);
    bool is_sharer(std::size_t llc_slot, std::uint32_t cpu) const;
    void empty_level(Level& l, bool shared);
    std::uint32_t& owner(std::size_t llc_slot) { return llc_.aux(llc_slot); }
    std::uint32_t* sharer_word(std::size_t llc_slot, std::uint32_t cpu) {
        return llc_.data.data() + llc_slot + llc_.off_sh + (cpu / 32) * std::size_t{llc_.ways};
    }

    CacheConfig cfg_;
    unsigned line_shift_ = 0;
    std::vector<Level> priv_;  // private levels, nearest first
    Level llc_;                // shared last level
    std::size_t words_ = 0;    // sharer words per LLC slot (0 without private levels)
    std::uint32_t clock_ = 0;             // last LRU stamp handed out
    std::vector<CacheCounters> phases_;
    std::size_t cur_ = 0;
    CacheCounters zero_;
};

}  // namespace kvmsim::engine
