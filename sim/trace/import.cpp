#include "sim/trace/import.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <set>
#include <vector>

namespace kvmsim::trace {

namespace {

using oj = nlohmann::ordered_json;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMaxPhysAddr = std::uint64_t{1} << 52;  // MAXPHYADDR
constexpr std::uint64_t kSlotAlign = std::uint64_t{2} << 20;
constexpr std::uint64_t kSlotMergeGap = std::uint64_t{1} << 30;  // one memslot across smaller holes
constexpr std::uint64_t kMaxSlotBytes = ((std::uint64_t{1} << 31) - 1) * kPage;  // KVM_MEM_MAX_NR_PAGES

enum class Access : std::uint8_t { Read, Write, Exec };

const char* access_name(Access a) { return a == Access::Write ? "write" : a == Access::Exec ? "exec" : "read"; }

struct Pending {
    std::uint64_t gpa = 0;
    Access access = Access::Read;
    bool present = false;  // a protection fault (the page was mapped)
};

struct Fault {
    std::uint64_t gpa = 0;
    Access access = Access::Read;
    bool present = false, spurious = false, mmio = false;
    std::int64_t exit_ns = 0;
    std::int64_t latency_ns = -1;     // -1: the exit's kvm_entry is not in the trace
    std::int64_t gap_before_ns = 0;   // guest time since the previous fault's entry (or the start)
};

struct Thread {
    std::string key;
    std::size_t first_line = 0;
    std::optional<std::uint32_t> vcpu;
    bool in_kvm = false;
    bool ept_exit = false;         // the current exit is a VMX EPT violation
    // The current exit is an SVM NPF: its fault from kvm_exit's info1 (the error code) and info2
    // (the guest physical address), used when no kvm_page_fault line follows it.
    std::optional<Pending> npf;
    std::int64_t exit_ns = 0;
    std::int64_t last_entry_ns = 0;  // guest time runs from here
    std::int64_t guest_ns = 0;       // guest time since the last fault's entry
    std::int64_t last_ns = 0;
    std::vector<Pending> pending;
    bool pending_mmio = false, pending_spurious = false;
    std::vector<Fault> faults;
    std::int64_t tail_ns = 0;  // guest time after the last fault, to the end of the trace
};

struct Line {
    std::string_view thread;
    std::int64_t ns = 0;
    std::string_view event;  // without the "kvm:" / "kvmmmu:" subsystem
    std::string_view fields;
    bool perf = false;
};

bool is_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// "SECONDS.FRACTION:" in nanoseconds (trace-cmd prints microseconds by default, perf nanoseconds).
std::optional<std::int64_t> parse_timestamp(std::string_view tok) {
    if (tok.size() < 4 || tok.back() != ':') return std::nullopt;
    tok.remove_suffix(1);
    const std::size_t dot = tok.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    const std::string_view sec = tok.substr(0, dot), frac = tok.substr(dot + 1);
    // At most 9 digits of seconds (31 years of uptime): nanoseconds stay within int64.
    if (!is_digits(sec) || !is_digits(frac) || sec.size() > 9 || frac.size() > 9) return std::nullopt;
    std::int64_t s = 0, f = 0;
    for (char c : sec) s = s * 10 + (c - '0');
    for (char c : frac) f = f * 10 + (c - '0');
    for (std::size_t i = frac.size(); i < 9; ++i) f *= 10;
    return s * 1'000'000'000 + f;
}

std::vector<std::string_view> tokens(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) ++i;
        std::size_t j = i;
        while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != ',') ++j;
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

// A trace line: "COMM-TID [CPU] FLAGS TIMESTAMP: EVENT: FIELDS" (trace-cmd report) or
// "COMM TID [CPU] TIMESTAMP: SUBSYSTEM:EVENT: FIELDS" (perf script). COMM may hold spaces.
std::optional<Line> parse_line(std::string_view s) {
    std::size_t open = 0;
    for (;;) {
        open = s.find('[', open);
        if (open == std::string_view::npos) return std::nullopt;
        const std::size_t close = s.find(']', open);
        if (close != std::string_view::npos && close > open + 1 && is_digits(s.substr(open + 1, close - open - 1))) break;
        ++open;
    }
    Line l;
    l.thread = trim(s.substr(0, open));
    if (l.thread.empty()) return std::nullopt;
    std::string_view rest = s.substr(s.find(']', open) + 1);
    // Up to two tokens (irq flags, preempt depth) before the timestamp.
    for (int k = 0; k < 3; ++k) {
        rest = trim(rest);
        const std::size_t sp = std::min(rest.find(' '), rest.size());
        const std::string_view tok = rest.substr(0, sp);
        rest.remove_prefix(sp);
        if (auto ns = parse_timestamp(tok)) {
            l.ns = *ns;
            rest = trim(rest);
            const std::size_t end = std::min(rest.find(' '), rest.size());
            std::string_view ev = rest.substr(0, end);
            if (ev.size() < 2 || ev.back() != ':') return std::nullopt;
            ev.remove_suffix(1);
            if (const std::size_t colon = ev.find(':'); colon != std::string_view::npos) {
                l.perf = true;
                ev = ev.substr(colon + 1);
            }
            l.event = ev;
            l.fields = trim(rest.substr(end));
            return l;
        }
    }
    return std::nullopt;
}

// The thread: COMM-TID or COMM TID, keyed by its TID.
std::string thread_key(std::string_view t) {
    std::size_t i = t.size();
    while (i > 0 && t[i - 1] >= '0' && t[i - 1] <= '9') --i;
    if (i < t.size() && i > 0 && (t[i - 1] == '-' || t[i - 1] == ' ')) return std::string(t.substr(i));
    return std::string(t);
}

std::string seconds_text(std::int64_t ns) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%lld.%09llds", static_cast<long long>(ns / 1'000'000'000),
                  static_cast<long long>(ns % 1'000'000'000));
    return buf;
}

// For messages: the text with bytes that are not printable ASCII as '?'.
std::string printable(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
    return out;
}

bool header_line(std::string_view s) {
    s = trim(s);
    return s.empty() || s[0] == '#' || s.rfind("cpus=", 0) == 0 || s.rfind("version", 0) == 0 ||
           (s.rfind("CPU", 0) == 0 && s.find("is empty") != std::string_view::npos);
}

bool lost_events_line(std::string_view s) {
    s = trim(s);
    return s.rfind("CPU", 0) == 0 && s.find("LOST") != std::string_view::npos;
}

class Importer {
public:
    Importer(std::string file, const ImportOptions& opts) : file_(std::move(file)), opts_(opts) {}

    ImportResult run(std::string_view text);

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw ImportError(file_, line_no_, what);
    }
    void skip(const std::string& why) { ++summary_.skipped[why]; }
    std::string_view field(const std::vector<std::string_view>& toks, std::string_view key, bool required,
                           const char* event) const;
    std::uint64_t number(std::string_view tok, int base, std::string_view key) const;
    void set_arch(const char* arch);
    void set_vcpu(Thread& t, std::string_view tok);
    Thread& thread(std::string_view name);
    void event(const Line& l);
    void close_exit(Thread& t, std::int64_t entry_ns, bool entered);
    oj build();

    std::string file_;
    ImportOptions opts_;
    std::size_t line_no_ = 0;
    ImportSummary summary_;
    std::string arch_;
    std::size_t arch_line_ = 0;
    std::optional<std::int64_t> first_ns_;
    std::int64_t last_ns_ = 0;
    std::size_t last_ns_line_ = 0;
    std::vector<Thread> threads_;  // in order of first appearance
    std::map<std::string, std::size_t> thread_index_;
    std::map<std::uint32_t, std::size_t> vcpu_owner_;  // trace vCPU id -> thread
    std::map<std::string, std::uint64_t> exits_, events_;
    bool perf_ = false, format_known_ = false;
};

std::string_view Importer::field(const std::vector<std::string_view>& toks, std::string_view key, bool required,
                                 const char* event) const {
    for (std::size_t i = 0; i < toks.size(); ++i) {
        if (toks[i] == key && i + 1 < toks.size()) return toks[i + 1];
        // "addr:VALUE" (handle_mmio_page_fault)
        if (toks[i].size() > key.size() + 1 && toks[i].substr(0, key.size()) == key && toks[i][key.size()] == ':')
            return toks[i].substr(key.size() + 1);
    }
    if (required) fail(std::string(event) + ": expected a field \"" + std::string(key) + "\"");
    return {};
}

std::uint64_t Importer::number(std::string_view tok, int base, std::string_view key) const {
    std::string s(tok);
    if (!s.empty() && (s.back() == ')' || s.back() == ':')) s.pop_back();
    const bool hex_prefix = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    const std::string digits = hex_prefix ? s.substr(2) : s;
    const bool ok = !digits.empty() && digits.size() <= 16 &&
                    std::all_of(digits.begin(), digits.end(), [&](char c) {
                        return (c >= '0' && c <= '9') || (base == 16 && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
                    });
    if (!ok || (hex_prefix && base != 16))
        fail("expected " + std::string(base == 16 ? "a hexadecimal" : "a decimal") + " number for \"" +
             std::string(key) + "\", got \"" + std::string(tok) + "\"");
    return std::strtoull(digits.c_str(), nullptr, base);
}

void Importer::set_arch(const char* arch) {
    if (arch_.empty()) {
        arch_ = arch;
        arch_line_ = line_no_;
    } else if (arch_ != arch) {
        fail(std::string("an ") + arch + " event in a trace of " + arch_ + " events (line " + std::to_string(arch_line_) +
             "): expected the trace of one host");
    }
}

void Importer::set_vcpu(Thread& t, std::string_view tok) {
    const auto id = static_cast<std::uint32_t>(std::min<std::uint64_t>(number(tok, 10, "vcpu"), 1u << 30));
    if (t.vcpu && *t.vcpu == id) return;
    if (t.vcpu)
        fail("thread " + t.key + " is vcpu " + std::to_string(*t.vcpu) + " and now vcpu " + std::to_string(id) +
             ": expected one vCPU per thread");
    if (auto it = vcpu_owner_.find(id); it != vcpu_owner_.end())
        fail("vcpu " + std::to_string(id) + " appears on thread " + threads_[it->second].key + " (line " +
             std::to_string(threads_[it->second].first_line) + ") and thread " + t.key +
             ": expected one VM (two VMs in one trace? record or report one QEMU process: trace-cmd -P PID)");
    t.vcpu = id;
    vcpu_owner_[id] = static_cast<std::size_t>(&t - threads_.data());
}

Thread& Importer::thread(std::string_view name) {
    const std::string key = thread_key(name);
    auto [it, inserted] = thread_index_.try_emplace(key, threads_.size());
    if (inserted) {
        Thread t;
        t.key = key;
        t.first_line = line_no_;
        t.last_entry_ns = *first_ns_;
        threads_.push_back(std::move(t));
    }
    return threads_[it->second];
}

// The exit ends at `entry_ns`: its faults are recorded (latency known if `entered`).
void Importer::close_exit(Thread& t, std::int64_t entry_ns, bool entered) {
    if (t.pending.empty() && t.npf) {
        t.pending.push_back(*t.npf);
        ++events_["kvm_exit npf without kvm_page_fault"];
    }
    t.npf.reset();
    if (!t.pending.empty()) {
        bool first = true;
        for (const Pending& p : t.pending) {
            Fault f;
            f.gpa = p.gpa;
            f.access = p.access;
            f.present = p.present;
            f.spurious = t.pending_spurious;
            f.mmio = t.pending_mmio;
            f.exit_ns = t.exit_ns;
            if (entered && first && !f.mmio) f.latency_ns = entry_ns - t.exit_ns;
            if (!f.mmio) {
                f.gap_before_ns = t.guest_ns;
                t.guest_ns = 0;
                first = false;
            }
            t.faults.push_back(f);
        }
    }
    t.pending.clear();
    t.pending_mmio = t.pending_spurious = false;
    t.in_kvm = false;
    t.ept_exit = false;
    t.last_entry_ns = entry_ns;
}

void Importer::event(const Line& l) {
    const std::string ev(l.event);
    const auto toks = tokens(l.fields);
    const char* name = ev.c_str();
    static const std::set<std::string> kKnown = {
        "kvm_exit", "kvm_entry", "kvm_page_fault", "kvm_guest_fault", "fast_page_fault", "kvm_mmu_spte_requested",
        "kvm_mmu_set_spte", "kvm_mmu_prepare_zap_page", "kvm_tdp_mmu_spte_changed", "handle_mmio_page_fault"};
    if (!kKnown.count(ev)) {
        skip("event " + ev);
        // A vCPU thread's other events still mark its time (the guest time after its last fault).
        if (auto it = thread_index_.find(thread_key(l.thread)); it != thread_index_.end()) threads_[it->second].last_ns = l.ns;
        return;
    }
    ++summary_.events;
    Thread& t = thread(l.thread);
    t.last_ns = l.ns;
    if (ev == "kvm_exit") {
        const bool arm = l.fields.find("HSR_EC") != std::string_view::npos ||
                         l.fields.find("ESR_EC") != std::string_view::npos;
        std::string reason;
        if (arm) {
            set_arch("arm64");
            const std::size_t open = l.fields.find('('), close = l.fields.find(')');
            reason = open != std::string_view::npos && close > open ? std::string(l.fields.substr(open + 1, close - open - 1))
                                                                     : std::string("?");
        } else {
            set_arch("x86");
            if (auto v = field(toks, "vcpu", false, name); !v.empty()) set_vcpu(t, v);
            reason = std::string(field(toks, "reason", true, name));
        }
        ++exits_[reason];
        if (t.in_kvm) {
            skip("kvm_exit without kvm_entry before it (lost events?)");
            close_exit(t, l.ns, false);
        }
        t.guest_ns += l.ns - t.last_entry_ns;
        t.in_kvm = true;
        t.exit_ns = l.ns;
        t.ept_exit = reason == "EPT_VIOLATION";
        if (!arm && (reason == "npf" || reason == "NPF")) {
            // SVM's exit_info_1 is the NPF error code (PFERR_*), exit_info_2 the faulting GPA.
            const std::uint64_t ec = number(field(toks, "info1", true, name), 16, "info1");
            Pending p;
            p.gpa = number(field(toks, "info2", true, name), 16, "info2");
            p.access = ec & 2 ? Access::Write : ec & 16 ? Access::Exec : Access::Read;
            p.present = (ec & 1) != 0;
            if (p.gpa < kMaxPhysAddr) t.npf = p;
        }
    } else if (ev == "kvm_entry") {
        if (l.fields.rfind("PC:", 0) == 0) {
            set_arch("arm64");
        } else {
            set_arch("x86");
            set_vcpu(t, field(toks, "vcpu", true, name));
        }
        if (t.in_kvm) close_exit(t, l.ns, true);
        else t.last_entry_ns = l.ns;  // the trace starts inside KVM
    } else if (ev == "kvm_page_fault" || ev == "kvm_guest_fault") {
        Pending p;
        if (ev == "kvm_page_fault") {
            set_arch("x86");
            if (auto v = field(toks, "vcpu", false, name); !v.empty()) set_vcpu(t, v);
            p.gpa = number(field(toks, "address", true, name), 16, "address");
            const std::uint64_t ec = number(field(toks, "error_code", true, name), 16, "error_code");
            if (t.in_kvm && t.ept_exit) {
                // EPT violation exit qualification: bit 0 read, 1 write, 2 fetch; 3-5 the
                // EPT entry's R/W/X (the page was present).
                p.access = ec & 2 ? Access::Write : ec & 4 ? Access::Exec : Access::Read;
                p.present = (ec & 0x38) != 0;
            } else {
                // PFERR_PRESENT_MASK (0), PFERR_WRITE_MASK (1), PFERR_FETCH_MASK (4)
                p.access = ec & 2 ? Access::Write : ec & 16 ? Access::Exec : Access::Read;
                p.present = (ec & 1) != 0;
            }
        } else {
            set_arch("arm64");
            p.gpa = number(field(toks, "ipa", true, name), 16, "ipa");
            std::string_view e = field(toks, "hsr", false, name);
            if (e.empty()) e = field(toks, "esr", true, name);
            const std::uint64_t esr = number(e, 16, "hsr");
            const std::uint64_t ec = (esr >> 26) & 0x3f, fsc = esr & 0x3f;
            // ESR_ELx_EC_IABT_LOW/CUR: instruction abort; DABT: WnR (bit 6), S1PTW (bit 7) is a
            // write for KVM (kvm_is_write_fault)
            if (ec == 0x20 || ec == 0x21) p.access = Access::Exec;
            else p.access = (esr & (1u << 6)) || (esr & (1u << 7)) ? Access::Write : Access::Read;
            p.present = fsc >= 0x08 && fsc <= 0x0f;  // access flag or permission fault
        }
        if (p.gpa >= kMaxPhysAddr) {
            skip("fault address beyond 2^52 (a guest virtual address?)");
            return;
        }
        if (!t.in_kvm) {
            // No kvm_exit recorded: the fault marks the exit (its latency is unknown).
            t.guest_ns += l.ns - t.last_entry_ns;
            t.in_kvm = true;
            t.exit_ns = l.ns;
            t.pending.push_back(p);
            close_exit(t, l.ns, false);
            return;
        }
        t.pending.push_back(p);
    } else {
        set_arch("x86");
        ++events_[ev];
        if (ev == "fast_page_fault") {
            if (auto v = field(toks, "vcpu", false, name); !v.empty()) set_vcpu(t, v);
            if (number(field(toks, "spurious", true, name), 10, "spurious")) t.pending_spurious = true;
            if (number(field(toks, "fixed", true, name), 10, "fixed")) ++events_["fast_page_fault fixed"];
        } else if (ev == "kvm_mmu_spte_requested") {
            const std::uint64_t level = number(field(toks, "level", true, name), 10, "level");
            ++events_["kvm_mmu_spte_requested level " + std::to_string(level)];
        } else if (ev == "handle_mmio_page_fault") {
            number(field(toks, "addr", true, name), 16, "addr");
            t.pending_mmio = true;
        }
    }
}

ImportResult Importer::run(std::string_view text) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t nl = text.find('\n', pos);
        const bool truncated = nl == std::string_view::npos;
        const std::string_view s = text.substr(pos, truncated ? std::string_view::npos : nl - pos);
        pos = truncated ? text.size() : nl + 1;
        ++line_no_;
        ++summary_.lines;
        if (lost_events_line(s)) {
            skip("lost events line");
            continue;
        }
        if (header_line(s)) continue;
        const auto l = parse_line(s);
        if (!l) {
            if (truncated) {
                skip("truncated last line");
                continue;
            }
            fail("expected a trace line (COMM-TID [CPU] TIMESTAMP: EVENT: FIELDS, as trace-cmd report or perf "
                 "script print), got \"" + printable(s.substr(0, 80)) + "\"");
        }
        if (format_known_ && perf_ != l->perf)
            fail(std::string("a ") + (l->perf ? "perf script" : "trace-cmd report") + " line in a " +
                 (perf_ ? "perf script" : "trace-cmd report") + " trace: expected one format");
        if (l->ns < last_ns_) {
            if (truncated) {
                skip("truncated last line");
                continue;
            }
            fail("timestamp " + seconds_text(l->ns) + " is before line " + std::to_string(last_ns_line_) + "'s (" +
                 seconds_text(last_ns_) + "): expected a trace sorted by time");
        }
        if (truncated) {
            // The last line without its newline: take it only if it parses whole.
            const auto saved_threads = threads_;
            const auto saved_summary = summary_;
            try {
                if (!first_ns_) first_ns_ = l->ns;
                event(*l);
            } catch (const ImportError&) {
                threads_ = saved_threads;
                summary_ = saved_summary;
                skip("truncated last line");
            }
            continue;
        }
        format_known_ = true;
        perf_ = l->perf;
        if (!first_ns_) first_ns_ = l->ns;
        last_ns_ = l->ns;
        last_ns_line_ = line_no_;
        event(*l);
    }
    summary_.format = perf_ ? "perf" : "trace-cmd";
    summary_.arch = arch_;
    ImportResult r;
    r.scenario = build();
    r.summary = summary_;
    return r;
}

std::int64_t percentile(const std::vector<std::int64_t>& sorted, double q) {
    if (sorted.empty()) return 0;
    auto rank = static_cast<std::size_t>(q * static_cast<double>(sorted.size()) + 0.999999999);
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

std::string time_text(std::int64_t ns) { return std::to_string(ns) + "ns"; }

std::string size_text(std::uint64_t b) {
    if (b % (std::uint64_t{1} << 30) == 0) return std::to_string(b >> 30) + "G";
    if (b % (std::uint64_t{1} << 20) == 0) return std::to_string(b >> 20) + "M";
    return std::to_string(b >> 10) + "K";
}

const Fault* last_memory_fault(const Thread& t) {
    for (auto it = t.faults.rbegin(); it != t.faults.rend(); ++it)
        if (!it->mmio) return &*it;
    return nullptr;
}

struct Figures {
    std::uint64_t total = 0, read = 0, write = 0, exec = 0, not_present = 0, protection = 0, spurious = 0, mmio = 0;
    std::vector<std::int64_t> latency;
    void add(const Fault& f) {
        if (f.mmio) {
            ++mmio;
            return;
        }
        ++total;
        (f.access == Access::Write ? write : f.access == Access::Exec ? exec : read)++;
        (f.present ? protection : not_present)++;
        if (f.spurious) ++spurious;
        if (f.latency_ns >= 0) latency.push_back(f.latency_ns);
    }
    oj json() {
        std::sort(latency.begin(), latency.end());
        std::int64_t sum = 0;
        for (auto x : latency) sum += x;
        oj j;
        j["faults"] = {{"total", total},           {"read", read},         {"write", write},
                       {"exec", exec},             {"not_present", not_present}, {"protection", protection},
                       {"spurious", spurious},     {"mmio", mmio}};
        j["latency_ns"] = {{"count", latency.size()},
                           {"p50", percentile(latency, 0.5)},
                           {"p99", percentile(latency, 0.99)},
                           {"max", latency.empty() ? 0 : latency.back()},
                           {"mean", latency.empty() ? 0 : sum / static_cast<std::int64_t>(latency.size())}};
        return j;
    }
};

oj Importer::build() {
    // The guest time after each thread's last fault: to its last event if it is back in the
    // guest then. Exits still open at the end: their faults count, without a latency.
    for (auto& t : threads_) {
        const bool fault_pending = !t.pending.empty() && !t.pending_mmio;
        t.tail_ns = t.in_kvm ? (fault_pending ? 0 : t.guest_ns) : t.guest_ns + (t.last_ns - t.last_entry_ns);
        if (t.in_kvm) close_exit(t, t.last_ns, false);
    }
    std::uint64_t faults = 0;
    for (const auto& t : threads_)
        for (const auto& f : t.faults) faults += f.mmio ? 0 : 1;
    if (faults == 0)
        throw ImportError(file_, 0,
                          "no guest page faults in the trace (expected kvm_page_fault or kvm_guest_fault events: "
                          "trace-cmd record -e kvm -e kvmmmu, or perf record -e 'kvm:*' -e 'kvmmmu:*')");
    summary_.faults = faults;

    // vCPUs: the trace's ids in order, then threads without one (arm64) numbered after them.
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < threads_.size(); ++i) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const auto& x = threads_[a].vcpu;
        const auto& y = threads_[b].vcpu;
        if (x.has_value() != y.has_value()) return x.has_value();
        return x && y ? *x < *y : false;
    });
    std::uint32_t next_id = vcpu_owner_.empty() ? 0 : vcpu_owner_.rbegin()->first + 1;
    oj vcpu_ids = oj::array();
    for (std::size_t i : order) vcpu_ids.push_back(threads_[i].vcpu ? *threads_[i].vcpu : next_id++);
    summary_.vcpus = order.size();

    // Memslots covering every faulting page.
    std::set<std::uint64_t> pages;
    for (const auto& t : threads_)
        for (const auto& f : t.faults)
            if (!f.mmio) pages.insert(f.gpa / kPage * kPage);
    std::uint64_t align = kSlotAlign;
    if (opts_.backing == "anonymous_hugetlb_1gb") align = std::uint64_t{1} << 30;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> slots;  // [start, end)
    for (std::uint64_t p : pages) {
        const std::uint64_t s = p / align * align, e = s + align;
        if (!slots.empty() && s <= slots.back().second + kSlotMergeGap && e - slots.back().first <= kMaxSlotBytes / align * align)
            slots.back().second = std::max(slots.back().second, e);
        else
            slots.emplace_back(s, e);
    }
    oj memslots = oj::array();
    std::uint32_t id = 1;
    for (const auto& [s, e] : slots)
        memslots.push_back({{"id", id++}, {"base", s}, {"size", size_text(e - s)}, {"backing", opts_.backing}});

    // Phases: time windows from the first timestamp.
    const std::int64_t t0 = *first_ns_;
    std::int64_t t_end = t0;
    for (const auto& t : threads_) t_end = std::max(t_end, t.last_ns);
    const std::int64_t span = t_end - t0 + 1;
    const auto window = opts_.window_ns ? static_cast<std::int64_t>(opts_.window_ns) : span;
    const std::size_t nwin = static_cast<std::size_t>((span + window - 1) / window);
    if (nwin > 10'000) throw ImportError(file_, 0, "the window gives " + std::to_string(nwin) + " phases; expected at most 10000");
    auto win_of = [&](std::int64_t ns) { return static_cast<std::size_t>((ns - t0) / window); };
    auto win_name = [&](std::size_t w) { return opts_.window_ns ? "window " + std::to_string(w) : std::string("trace"); };

    oj phases = oj::array();
    oj rec_phases = oj::array();
    Figures whole;
    for (const auto& t : threads_)
        for (const auto& f : t.faults) whole.add(f);
    for (std::size_t w = 0; w < nwin; ++w) {
        const std::int64_t ws = t0 + static_cast<std::int64_t>(w) * window;
        oj streams = oj::array();
        Figures fig;
        bool any = false;
        for (std::size_t i : order) {
            const Thread& t = threads_[i];
            std::vector<const Fault*> in;
            for (const auto& f : t.faults)
                if (win_of(f.exit_ns) == w) {
                    fig.add(f);
                    if (!f.mmio) in.push_back(&f);
                }
            oj s;
            s["pattern"] = "explicit";
            oj acc = oj::array();
            if (!in.empty()) {
                any = true;
                const std::int64_t delay = w == 0 ? in.front()->gap_before_ns
                                                  : std::min(in.front()->gap_before_ns, in.front()->exit_ns - ws);
                s["start_delay"] = time_text(std::max<std::int64_t>(0, delay));
                for (std::size_t k = 0; k < in.size(); ++k) {
                    std::int64_t gap = 0;
                    if (k + 1 < in.size()) {
                        gap = in[k + 1]->gap_before_ns;
                    } else if (in[k] == last_memory_fault(t)) {
                        gap = t.tail_ns;  // the vCPU's last fault
                    }
                    acc.push_back({in[k]->gpa / kPage * kPage, access_name(in[k]->access), time_text(gap)});
                }
            }
            s["accesses"] = std::move(acc);
            streams.push_back(std::move(s));
        }
        oj rp = fig.json();
        rp["name"] = win_name(w);
        oj named;
        named["name"] = win_name(w);
        named["from"] = time_text(ws - t0);
        named["to"] = time_text(std::min(ws + window, t_end + 1) - t0);
        named["faults"] = rp["faults"];
        named["latency_ns"] = rp["latency_ns"];
        if (!any && opts_.window_ns) continue;  // a window without faults: no phase
        phases.push_back({{"name", win_name(w)}, {"streams", std::move(streams)}});
        rec_phases.push_back(std::move(named));
    }
    summary_.phases = phases.size();

    const std::string model = !opts_.model.empty() ? opts_.model : arch_ == "arm64" ? "arm64_stage2" : "x86_tdp";
    const std::string host = !opts_.host.empty() ? opts_.host : arch_ == "arm64" ? "kunpeng-920" : "x86-server";
    std::string name = opts_.name;
    if (name.empty()) {
        const std::size_t slash = file_.find_last_of('/');
        name = file_.substr(slash == std::string::npos ? 0 : slash + 1);
        if (const std::size_t dot = name.find_last_of('.'); dot != std::string::npos && dot > 0) name.resize(dot);
        if (name.empty()) name = "trace";
    }
    oj skipped = oj::object();
    for (const auto& [k, v] : summary_.skipped) skipped[k] = v;
    oj whole_j = whole.json();
    whole_j["exits"] = oj::object();
    for (const auto& [k, v] : exits_) whole_j["exits"][k] = v;
    whole_j["events"] = oj::object();
    for (const auto& [k, v] : events_) whole_j["events"][k] = v;

    oj sc;
    sc["name"] = name;
    sc["description"] = "Imported by kvmsim import-trace from " + file_ + " (" + summary_.format + ", " + arch_ + ", " +
                        std::to_string(faults) + " guest page faults on " + std::to_string(order.size()) +
                        " vCPUs): each vCPU replays its faulting pages in order with the guest time between them.";
    sc["seed"] = 1;
    sc["host"] = {{"profile", host}};
    sc["vm"] = {{"vcpus", order.size()}, {"memslots", std::move(memslots)}};
    sc["mmu"] = {{"model", model}};
    sc["workload"] = {{"phases", std::move(phases)}};
    sc["recorded"] = {{"source", {{"file", file_},
                                  {"format", summary_.format},
                                  {"arch", arch_},
                                  {"lines", summary_.lines},
                                  {"skipped", std::move(skipped)}}},
                      {"vcpu_ids", std::move(vcpu_ids)},
                      {"phases", std::move(rec_phases)},
                      {"whole", std::move(whole_j)}};
    return sc;
}

}  // namespace

ImportResult import_trace(std::string_view text, const std::string& file, const ImportOptions& opts) {
    Importer im(file, opts);
    return im.run(text);
}

}  // namespace kvmsim::trace
