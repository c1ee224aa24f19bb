#include "sim/scenario/json_util.hpp"

#include "sim/scenario/input_file.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <new>
#include <system_error>

namespace kvmsim::scenario {

using nlohmann::json;

// ================================================================================================
// Parsing
// ================================================================================================

namespace {

// Builds the DOM like nlohmann's own SAX DOM parser, and also rejects duplicate keys and
// excessive nesting, which it can locate by JSON pointer because it knows the open containers.
class DomBuilder final : public nlohmann::json_sax<json> {
public:
    enum class Failure { None, Syntax, Located };

    explicit DomBuilder(json& root) : root_(root) {}

    Failure failure = Failure::None;
    std::size_t position = 0;   // Syntax: bytes read by the lexer
    std::string last_token;     // Syntax: the token text as nlohmann reports it
    std::string message;        // both
    std::string pointer;        // Located

    bool null() override { return scalar(json(nullptr)); }
    bool boolean(bool v) override { return scalar(json(v)); }
    bool number_integer(number_integer_t v) override { return scalar(json(v)); }
    bool number_unsigned(number_unsigned_t v) override { return scalar(json(v)); }
    bool number_float(number_float_t v, const string_t&) override { return scalar(json(v)); }
    bool string(string_t& v) override { return scalar(json(std::move(v))); }
    bool binary(binary_t&) override {  // never produced by the JSON parser
        return located(child_pointer(), "unexpected binary value");
    }
    bool start_object(std::size_t) override { return open(json::object()); }
    bool start_array(std::size_t) override { return open(json::array()); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool key(string_t& k) override {
        json& obj = *stack_.back();
        if (obj.contains(k)) return located(open_pointer(), "duplicate key " + quote(k));
        keys_.back() = k;
        pending_ = &obj[k];
        return true;
    }
    bool parse_error(std::size_t pos, const std::string& token,
                     const nlohmann::detail::exception& ex) override {
        failure = Failure::Syntax;
        position = pos;
        last_token = token;
        message = ex.what();
        return false;
    }

private:
    json* place(json&& v) {
        if (stack_.empty()) {
            root_ = std::move(v);
            return &root_;
        }
        json& top = *stack_.back();
        if (top.is_array()) {
            top.push_back(std::move(v));
            return &top.back();
        }
        *pending_ = std::move(v);
        return pending_;
    }
    bool scalar(json&& v) {
        place(std::move(v));
        return true;
    }
    bool open(json&& container) {
        if (stack_.size() >= kMaxJsonDepth)
            return located(child_pointer(), "nesting is deeper than " +
                                                std::to_string(kMaxJsonDepth) + " levels");
        // Pointers into the open containers stay valid: a parent gains no new element while
        // a child is open, and object members never move.
        stack_.push_back(place(std::move(container)));
        keys_.emplace_back();
        return true;
    }
    bool close() {
        stack_.pop_back();
        keys_.pop_back();
        return true;
    }
    bool located(std::string where, std::string what) {
        failure = Failure::Located;
        pointer = std::move(where);
        message = std::move(what);
        return false;
    }
    // The segment naming the child currently being filled in open container i.
    std::string segment(std::size_t i, bool next_element) const {
        const json& c = *stack_[i];
        if (c.is_array()) return std::to_string(next_element ? c.size() : c.size() - 1);
        return json_pointer_escape(keys_[i]);
    }
    // Pointer of the innermost open container.
    std::string open_pointer() const {
        std::string p;
        for (std::size_t i = 0; i + 1 < stack_.size(); ++i) p += "/" + segment(i, false);
        return p;
    }
    // Pointer of the value about to be added to the innermost open container.
    std::string child_pointer() const {
        if (stack_.empty()) return "";
        return open_pointer() + "/" + segment(stack_.size() - 1, true);
    }

    json& root_;
    std::vector<json*> stack_;
    std::vector<std::string> keys_;  // per open container: the member being filled (objects)
    json* pending_ = nullptr;
};

bool contains(std::string_view s, std::string_view part) { return s.find(part) != s.npos; }
bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// nlohmann: "[json.exception.parse_error.101] parse error at line 3, column 7: syntax error ..."
// -> "syntax error ..." (our own line and column replace nlohmann's).
std::string clean_nlohmann_message(std::string_view m) {
    if (!m.empty() && m.front() == '[') {
        const auto close = m.find("] ");
        if (close != m.npos) m.remove_prefix(close + 2);
    }
    if (m.starts_with("parse error")) {
        const auto colon = m.find(": ");
        if (colon != m.npos) m.remove_prefix(colon + 2);
    }
    return printable(m);
}

// The byte offset a syntax error is reported at: the start of a complete but unexpected token
// (string, number, true/false/null), otherwise the last byte the lexer read (for an unexpected
// end of input that is one past the end).
std::size_t syntax_error_offset(std::string_view text, std::size_t position,
                                std::string_view token, std::string_view message) {
    std::size_t offset = position == 0 ? 0 : position - 1;
    std::string_view whole_token;
    if (contains(message, "unexpected string literal") || contains(message, "unexpected number literal") ||
        contains(message, "number overflow"))
        whole_token = token;
    else if (contains(message, "unexpected true literal")) whole_token = "true";
    else if (contains(message, "unexpected false literal")) whole_token = "false";
    else if (contains(message, "unexpected null literal")) whole_token = "null";
    if (!whole_token.empty() && whole_token.size() <= position && position <= text.size() &&
        text.substr(position - whole_token.size(), whole_token.size()) == whole_token)
        offset = position - whole_token.size();
    return std::min(offset, text.size());
}

// A hint for the two most common hand-editing mistakes.
std::string syntax_hint(std::string_view text, std::size_t offset, std::string_view message) {
    std::size_t i = std::min(offset, text.size());
    while (i > 0 && is_json_space(text[i - 1])) --i;
    const char prev = i > 0 ? text[i - 1] : '\0';
    if ((contains(message, "unexpected '}'") || contains(message, "unexpected ']'")) && prev == ',')
        return " (trailing commas are not allowed)";
    if ((ends_with(message, "expected '}'") || ends_with(message, "expected ']'")) &&
        contains(message, "unexpected") && !contains(message, "end of input") && prev != ',')
        return " (missing ',' before it?)";
    return "";
}

}  // namespace

std::pair<std::size_t, std::size_t> line_column(std::string_view text, std::size_t offset) {
    offset = std::min(offset, text.size());
    std::size_t line = 1, line_start = 0;
    for (std::size_t i = 0; i < offset; ++i)
        if (text[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
    std::size_t column = 1;
    for (std::size_t i = line_start; i < offset; ++i)
        if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) ++column;
    if (line_start == 0 && offset >= 3 && text.starts_with("\xef\xbb\xbf")) --column;  // BOM
    return {line, column};
}

json parse_json_text(std::string_view text, const std::string& file_label) {
    json root;
    DomBuilder builder(root);
    bool ok = false;
    try {
        ok = json::sax_parse(text.begin(), text.end(), &builder, json::input_format_t::json,
                             /*strict=*/true, /*ignore_comments=*/false);
    } catch (const json::exception& e) {
        // Not expected from the SAX parser, but never let a library exception escape.
        throw ScenarioError::file_error(file_label, "cannot parse JSON: " + clean_nlohmann_message(e.what()));
    } catch (const std::bad_alloc&) {
        throw ScenarioError::file_error(file_label, "out of memory while parsing JSON");
    }
    switch (builder.failure) {
    case DomBuilder::Failure::None:
        if (ok) return root;
        throw ScenarioError::syntax(file_label, 1, 1, "cannot parse JSON");
    case DomBuilder::Failure::Located:
        throw ScenarioError(file_label, builder.pointer, builder.message);
    case DomBuilder::Failure::Syntax: {
        const std::string message = clean_nlohmann_message(builder.message);
        const std::size_t offset =
            syntax_error_offset(text, builder.position, builder.last_token, message);
        const auto [line, column] = line_column(text, offset);
        if (offset < text.size() && text[offset] == '\0')  // nlohmann calls it "end of input"
            throw ScenarioError::syntax(file_label, line, column,
                                        "unexpected NUL byte (is this a JSON text file?)");
        throw ScenarioError::syntax(file_label, line, column,
                                    message + syntax_hint(text, offset, message));
    }
    }
    throw ScenarioError::syntax(file_label, 1, 1, "cannot parse JSON");
}

json parse_json_file(const std::filesystem::path& path) {
    const std::string label = path.string();
    return parse_json_text(read_input_file(label, "a JSON file"), label);
}

// ================================================================================================
// Merge patch (RFC 7386)
// ================================================================================================

namespace {
void merge_into(json& target, const json& patch) {
    if (!patch.is_object()) {
        target = patch;
        return;
    }
    if (!target.is_object()) target = json::object();
    for (auto it = patch.begin(); it != patch.end(); ++it) {
        if (it.value().is_null()) target.erase(it.key());
        else merge_into(target[it.key()], it.value());
    }
}
}  // namespace

// `patch` is taken by value: it may live inside `target` (a variant stored in the scenario).
void apply_merge_patch(json& target, json patch) { merge_into(target, patch); }

json merge_patch(json target, const json& patch) {
    merge_into(target, patch);
    return target;
}

// ================================================================================================
// Pointers, names, descriptions
// ================================================================================================

std::string json_pointer_escape(std::string_view key) {
    std::string out;
    out.reserve(key.size());
    for (char c : key) {
        if (c == '~') out += "~0";
        else if (c == '/') out += "~1";
        else out += c;
    }
    return out;
}

std::string json_pointer_append(std::string_view pointer, std::string_view key) {
    std::string out(pointer);
    out += '/';
    out += json_pointer_escape(key);
    return out;
}

std::string json_pointer_append(std::string_view pointer, std::size_t index) {
    std::string out(pointer);
    out += '/';
    out += std::to_string(index);
    return out;
}

namespace {

char fold(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Optimal string alignment distance, ASCII case-insensitive.
std::size_t osa_distance(std::string_view a, std::string_view b) {
    const std::size_t m = b.size();
    std::vector<std::size_t> prev2(m + 1), prev(m + 1), cur(m + 1);
    for (std::size_t j = 0; j <= m; ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= m; ++j) {
            const std::size_t cost = fold(a[i - 1]) == fold(b[j - 1]) ? 0 : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && fold(a[i - 1]) == fold(b[j - 2]) && fold(a[i - 2]) == fold(b[j - 1]))
                cur[j] = std::min(cur[j], prev2[j - 2] + 1);
        }
        std::swap(prev2, prev);
        std::swap(prev, cur);
    }
    return prev[m];
}

template <class Range>
std::optional<std::string> closest(std::string_view word, const Range& candidates) {
    const std::size_t limit = std::max<std::size_t>(1, word.size() / 3);
    std::optional<std::string> best;
    std::size_t best_distance = limit + 1;
    for (const auto& c : candidates) {
        const std::string_view cand(c);
        const std::size_t diff =
            cand.size() > word.size() ? cand.size() - word.size() : word.size() - cand.size();
        if (diff > limit) continue;  // the distance is at least the length difference
        const std::size_t d = osa_distance(word, cand);
        if (d < best_distance) {
            best_distance = d;
            best = std::string(cand);
        }
    }
    return best;
}

template <class Range>
std::string suffix_for(std::string_view word, const Range& candidates) {
    const auto s = closest(word, candidates);
    return s ? " (did you mean " + quote(*s) + "?)" : std::string();
}

}  // namespace

std::optional<std::string> did_you_mean(std::string_view word,
                                        std::span<const std::string_view> candidates) {
    return closest(word, candidates);
}
std::optional<std::string> did_you_mean(std::string_view word,
                                        std::span<const std::string> candidates) {
    return closest(word, candidates);
}
std::optional<std::string> did_you_mean(std::string_view word,
                                        std::initializer_list<std::string_view> candidates) {
    return closest(word, candidates);
}
std::string did_you_mean_suffix(std::string_view word, std::span<const std::string_view> candidates) {
    return suffix_for(word, candidates);
}
std::string did_you_mean_suffix(std::string_view word, std::span<const std::string> candidates) {
    return suffix_for(word, candidates);
}

std::string_view json_type_name(const json& v) {
    switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "discarded";
    }
    return "unknown";
}

std::string describe_json(const json& v, std::size_t max_chars) {
    if (v.is_string()) return quote(v.get_ref<const std::string&>(), max_chars);
    std::string text;
    try {
        text = v.dump(-1, ' ', false, json::error_handler_t::replace);
    } catch (const json::exception&) {
        return std::string("<") + std::string(json_type_name(v)) + ">";
    }
    std::size_t chars = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if ((static_cast<unsigned char>(text[i]) & 0xc0) == 0x80) continue;
        if (chars == max_chars) return text.substr(0, i) + "...";
        ++chars;
    }
    return text;
}

std::string canonical_json(const json& v) {
    return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ================================================================================================
// SHA-256 (FIPS 180-4)
// ================================================================================================

namespace {

constexpr std::array<std::uint32_t, 64> kSha256K{
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

constexpr std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void sha256_block(std::array<std::uint32_t, 8>& h, const unsigned char* p) {
    std::array<std::uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i)
        w[i] = (std::uint32_t{p[4 * i]} << 24) | (std::uint32_t{p[4 * i + 1]} << 16) |
               (std::uint32_t{p[4 * i + 2]} << 8) | std::uint32_t{p[4 * i + 3]};
    for (int i = 16; i < 64; ++i) {
        const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; ++i) {
        const std::uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        const std::uint32_t ch = (e & f) ^ (~e & g);
        const std::uint32_t t1 = k + S1 + ch + kSha256K[i] + w[i];
        const std::uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        const std::uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        const std::uint32_t t2 = S0 + maj;
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
    std::array<std::uint32_t, 8> h{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    const std::size_t n = data.size();
    std::size_t full = n / 64;
    for (std::size_t i = 0; i < full; ++i) sha256_block(h, p + 64 * i);
    // Padding: 0x80, zeros, then the bit length as a 64-bit big-endian number.
    std::array<unsigned char, 128> tail{};
    const std::size_t rest = n % 64;
    if (rest > 0) std::memcpy(tail.data(), p + 64 * full, rest);
    tail[rest] = 0x80;
    const std::size_t tail_len = rest < 56 ? 64 : 128;
    const std::uint64_t bits = static_cast<std::uint64_t>(n) * 8;
    for (int i = 0; i < 8; ++i)
        tail[tail_len - 1 - static_cast<std::size_t>(i)] = static_cast<unsigned char>(bits >> (8 * i));
    for (std::size_t off = 0; off < tail_len; off += 64) sha256_block(h, tail.data() + off);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(64);
    for (std::uint32_t word : h)
        for (int shift = 28; shift >= 0; shift -= 4) out += hex[(word >> shift) & 0xf];
    return out;
}

// ================================================================================================
// Node
// ================================================================================================

namespace {

std::string format_double(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

// "an integer between 1 and 8", "an integer at least 1", "an integer".
template <class T, class Fmt>
std::string range_phrase(std::string_view noun, T min, T max, T lowest, T highest, Fmt fmt) {
    std::string s(noun);
    if (min != lowest && max != highest) s += " between " + fmt(min) + " and " + fmt(max);
    else if (min != lowest) s += " of at least " + fmt(min);
    else if (max != highest) s += " of at most " + fmt(max);
    return s;
}

std::string int_phrase(std::int64_t min, std::int64_t max) {
    return range_phrase<std::int64_t>("an integer", min, max,
                                      std::numeric_limits<std::int64_t>::min(),
                                      std::numeric_limits<std::int64_t>::max(),
                                      [](std::int64_t v) { return std::to_string(v); });
}
std::string uint_phrase(std::uint64_t min, std::uint64_t max) {
    // The lower bound is always shown: a negative value is as wrong as a too small one.
    if (max == std::numeric_limits<std::uint64_t>::max())
        return min == 0 ? "a non-negative integer" : "an integer of at least " + std::to_string(min);
    return "an integer between " + std::to_string(min) + " and " + std::to_string(max);
}
std::string number_phrase(double min, double max) {
    return range_phrase<double>("a number", min, max, -std::numeric_limits<double>::max(),
                                std::numeric_limits<double>::max(), format_double);
}

}  // namespace

Node::Node(const nlohmann::json& root, std::string file)
    : value_(&root), file_(std::make_shared<const std::string>(std::move(file))) {}

Node::Node(const nlohmann::json& value, std::string file, std::string pointer)
    : value_(&value), file_(std::make_shared<const std::string>(std::move(file))), pointer_(std::move(pointer)) {}

ScenarioError Node::error(std::string message) const {
    return ScenarioError(*file_, pointer_, std::move(message));
}
ScenarioError Node::error_at(std::string_view key, std::string message) const {
    return ScenarioError(*file_, json_pointer_append(pointer_, key), std::move(message));
}
void Node::fail(std::string message) const { throw error(std::move(message)); }
void Node::fail_expected(std::string_view what) const {
    fail("expected " + std::string(what) + ", got " + describe_json(*value_));
}

const nlohmann::json& Node::require_object() const {
    if (!value_->is_object()) fail_expected("an object");
    return *value_;
}

bool Node::has(std::string_view key) const noexcept {
    return value_->is_object() && value_->find(std::string(key)) != value_->end();
}

std::optional<Node> Node::find(std::string_view key) const {
    const nlohmann::json& obj = require_object();
    const auto it = obj.find(std::string(key));
    if (it == obj.end()) return std::nullopt;
    return Node(&*it, file_, json_pointer_append(pointer_, key));
}

Node Node::operator[](std::string_view key) const {
    if (auto m = find(key)) return *m;
    std::string message = "missing required key " + quote(key);
    // A present key that is a near miss is probably a typo of the missing one.
    const std::vector<std::string> present = keys();
    for (const std::string& k : present) {
        if (closest(k, std::array<std::string_view, 1>{key})) {
            message += " (is " + quote(k) + " a misspelling of it?)";
            break;
        }
    }
    fail(std::move(message));
}

Node Node::operator[](std::size_t index) const {
    if (!value_->is_array()) fail_expected("an array");
    if (index >= value_->size())
        fail("expected at least " + std::to_string(index + 1) + " elements, got " +
             std::to_string(value_->size()));
    return Node(&(*value_)[index], file_, json_pointer_append(pointer_, index));
}

Node Node::object(std::string_view key) const {
    Node m = (*this)[key];
    if (!m.is_object()) m.fail_expected("an object");
    return m;
}
Node Node::array(std::string_view key) const {
    Node m = (*this)[key];
    if (!m.is_array()) m.fail_expected("an array");
    return m;
}
std::optional<Node> Node::opt_object(std::string_view key) const {
    auto m = find(key);
    if (m && !m->is_object()) m->fail_expected("an object");
    return m;
}
std::optional<Node> Node::opt_array(std::string_view key) const {
    auto m = find(key);
    if (m && !m->is_array()) m->fail_expected("an array");
    return m;
}

std::vector<Node> Node::elements() const {
    if (!value_->is_array()) fail_expected("an array");
    std::vector<Node> out;
    out.reserve(value_->size());
    for (std::size_t i = 0; i < value_->size(); ++i)
        out.push_back(Node(&(*value_)[i], file_, json_pointer_append(pointer_, i)));
    return out;
}

std::vector<std::pair<std::string, Node>> Node::members() const {
    const nlohmann::json& obj = require_object();
    std::vector<std::pair<std::string, Node>> out;
    out.reserve(obj.size());
    for (auto it = obj.begin(); it != obj.end(); ++it)
        out.emplace_back(it.key(), Node(&it.value(), file_, json_pointer_append(pointer_, it.key())));
    return out;
}

std::vector<std::string> Node::keys() const {
    std::vector<std::string> out;
    if (!value_->is_object()) return out;
    for (auto it = value_->begin(); it != value_->end(); ++it) out.push_back(it.key());
    return out;
}

namespace {
template <class Range>
void check_keys_impl(const Node& node, const nlohmann::json& obj, const Range& allowed) {
    ErrorCollector errors;
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        const std::string& key = it.key();
        bool known = false;
        for (const auto& a : allowed)
            if (std::string_view(a) == key) known = true;
        if (known) continue;
        std::string message = "unknown key " + quote(key);
        if (const auto s = closest(key, allowed)) message += " (did you mean " + quote(*s) + "?)";
        else if (std::begin(allowed) == std::end(allowed)) message += " (no keys are allowed here)";
        else {
            std::string list;
            for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + quote(a);
            message += " (expected one of " + list + ")";
        }
        errors.add(node.error(std::move(message)));
    }
    errors.throw_if_any();
}
}  // namespace

void Node::check_keys(std::initializer_list<std::string_view> allowed) const {
    check_keys_impl(*this, require_object(), allowed);
}
void Node::check_keys(std::span<const std::string_view> allowed) const {
    check_keys_impl(*this, require_object(), allowed);
}
void Node::check_keys(std::span<const std::string> allowed) const {
    check_keys_impl(*this, require_object(), allowed);
}

const std::string& Node::as_string() const {
    if (!value_->is_string()) fail_expected("a string");
    return value_->get_ref<const std::string&>();
}

bool Node::as_bool() const {
    if (!value_->is_boolean()) fail_expected("true or false");
    return value_->get<bool>();
}

std::int64_t Node::as_int(std::int64_t min, std::int64_t max) const {
    if (value_->is_number_unsigned()) {
        const auto u = value_->get<std::uint64_t>();
        if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            const auto v = static_cast<std::int64_t>(u);
            if (v >= min && v <= max) return v;
        }
    } else if (value_->is_number_integer()) {
        const auto v = value_->get<std::int64_t>();
        if (v >= min && v <= max) return v;
    }
    fail_expected(int_phrase(min, max));
}

std::uint64_t Node::as_uint(std::uint64_t min, std::uint64_t max) const {
    if (value_->is_number_unsigned()) {
        const auto v = value_->get<std::uint64_t>();
        if (v >= min && v <= max) return v;
    } else if (value_->is_number_integer()) {
        const auto v = value_->get<std::int64_t>();
        if (v >= 0 && static_cast<std::uint64_t>(v) >= min && static_cast<std::uint64_t>(v) <= max)
            return static_cast<std::uint64_t>(v);
    }
    fail_expected(uint_phrase(min, max));
}

double Node::as_number(double min, double max) const {
    if (value_->is_number()) {
        const double v = value_->get<double>();
        if (v >= min && v <= max) return v;
    }
    fail_expected(number_phrase(min, max));
}

std::uint64_t Node::as_size(std::uint64_t min, std::uint64_t max) const {
    std::uint64_t bytes = 0;
    if (value_->is_string()) {
        const auto p = parse_size(value_->get_ref<const std::string&>());
        if (!p) fail(p.error());
        bytes = p.value();
    } else if (value_->is_number_unsigned()) {
        bytes = value_->get<std::uint64_t>();
    } else if (value_->is_number_integer()) {  // signed: only negative values land here
        const auto v = value_->get<std::int64_t>();
        if (v < 0) fail("expected a non-negative size, got " + describe_json(*value_));
        bytes = static_cast<std::uint64_t>(v);
    } else {
        fail_expected(kSizeExpectation);
    }
    if (bytes < min || bytes > max)
        fail_expected(range_phrase<std::uint64_t>("a size", min, max, 0,
                                                  std::numeric_limits<std::uint64_t>::max(),
                                                  format_size));
    return bytes;
}

engine::Time Node::as_time(engine::Time min, engine::Time max) const {
    if (value_->is_number())
        fail("expected a time such as \"15us\", got " + describe_json(*value_) +
             " (add a unit: ps, ns, us, ms or s)");
    if (!value_->is_string()) fail_expected(kTimeExpectation);
    const auto p = parse_time(value_->get_ref<const std::string&>());
    if (!p) fail(p.error());
    const engine::Time t = p.value();
    if (t < min || t > max)
        fail_expected(range_phrase<engine::Time>("a time", min, max, engine::Time::zero(),
                                                 engine::Time::max(), format_time));
    return t;
}

std::uint64_t Node::as_frequency(std::uint64_t min, std::uint64_t max) const {
    if (value_->is_number())
        fail("expected a frequency such as \"3.1GHz\", got " + describe_json(*value_) +
             " (add a unit: Hz, kHz, MHz or GHz)");
    if (!value_->is_string()) fail_expected(kFrequencyExpectation);
    const auto p = parse_frequency(value_->get_ref<const std::string&>());
    if (!p) fail(p.error());
    const std::uint64_t hz = p.value();
    if (hz < min || hz > max)
        fail_expected(range_phrase<std::uint64_t>("a frequency", min, max, 0,
                                                  std::numeric_limits<std::uint64_t>::max(),
                                                  format_frequency));
    return hz;
}

std::uint64_t Node::as_bandwidth(std::uint64_t min, std::uint64_t max) const {
    if (value_->is_number())
        fail("expected a bandwidth such as \"85GB/s\", got " + describe_json(*value_) +
             " (add a unit: B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s or GiB/s)");
    if (!value_->is_string()) fail_expected(kBandwidthExpectation);
    const auto p = parse_bandwidth(value_->get_ref<const std::string&>());
    if (!p) fail(p.error());
    const std::uint64_t bps = p.value();
    if (bps < min || bps > max)
        fail_expected(range_phrase<std::uint64_t>("a bandwidth", min, max, 0,
                                                  std::numeric_limits<std::uint64_t>::max(),
                                                  format_bandwidth));
    return bps;
}

void Node::fail_enum(std::span<const std::string_view> choices) const {
    std::string message;
    if (choices.empty()) message = "expected no value here (nothing is accepted)";
    else if (choices.size() == 1) message = "expected " + quote(choices.front(), SIZE_MAX);
    else message = "expected one of " + quoted_list(choices);
    message += ", got " + describe_json(*value_);
    if (value_->is_string())
        message += suffix_for(value_->get_ref<const std::string&>(), choices);
    fail(std::move(message));
}

std::string Node::as_enum(std::span<const std::string_view> choices) const {
    if (value_->is_string()) {
        const std::string& s = value_->get_ref<const std::string&>();
        for (std::string_view c : choices)
            if (c == s) return s;
    }
    fail_enum(choices);
}
std::string Node::as_enum(std::initializer_list<std::string_view> choices) const {
    return as_enum(std::span<const std::string_view>(choices.begin(), choices.size()));
}
std::string Node::as_enum(std::span<const std::string> choices) const {
    const std::vector<std::string_view> views(choices.begin(), choices.end());
    return as_enum(std::span<const std::string_view>(views));
}

std::string Node::opt_string(std::string_view key, std::string_view def) const {
    const auto m = find(key);
    return m ? m->as_string() : std::string(def);
}
bool Node::opt_bool(std::string_view key, bool def) const {
    const auto m = find(key);
    return m ? m->as_bool() : def;
}
std::int64_t Node::opt_int(std::string_view key, std::int64_t def, std::int64_t min,
                           std::int64_t max) const {
    const auto m = find(key);
    return m ? m->as_int(min, max) : def;
}
std::uint64_t Node::opt_uint(std::string_view key, std::uint64_t def, std::uint64_t min,
                             std::uint64_t max) const {
    const auto m = find(key);
    return m ? m->as_uint(min, max) : def;
}
double Node::opt_number(std::string_view key, double def, double min, double max) const {
    const auto m = find(key);
    return m ? m->as_number(min, max) : def;
}
std::uint64_t Node::opt_size(std::string_view key, std::uint64_t def, std::uint64_t min,
                             std::uint64_t max) const {
    const auto m = find(key);
    return m ? m->as_size(min, max) : def;
}
engine::Time Node::opt_time(std::string_view key, engine::Time def, engine::Time min,
                            engine::Time max) const {
    const auto m = find(key);
    return m ? m->as_time(min, max) : def;
}
std::uint64_t Node::opt_frequency(std::string_view key, std::uint64_t def, std::uint64_t min,
                                  std::uint64_t max) const {
    const auto m = find(key);
    return m ? m->as_frequency(min, max) : def;
}
std::string Node::opt_enum(std::string_view key, std::string_view def,
                           std::initializer_list<std::string_view> choices) const {
    const auto m = find(key);
    return m ? m->as_enum(choices) : std::string(def);
}
std::string Node::opt_enum(std::string_view key, std::string_view def,
                           std::span<const std::string> choices) const {
    const auto m = find(key);
    return m ? m->as_enum(choices) : std::string(def);
}

}  // namespace kvmsim::scenario
