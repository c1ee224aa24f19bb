// Located scenario errors. Every error a user can cause names the file, where in it (a JSON
// pointer, RFC 6901, or a line and column for syntax errors) and what was expected:
//
//   scenarios/seeds/003-zap.json: /mmu/knobs/zap_lock: expected one of "write", "read", got "wrte"
//   scenarios/seeds/003-zap.json:3:5: syntax error while parsing object - ...
//   scenarios/seeds/missing.json: cannot open file: No such file or directory
//
// The CLI catches ScenarioError (ScenarioErrors derives from it) and exits with status 2.
// Header-only: the formatting helpers here are shared by units.cpp, json_util.cpp and dag.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvmsim::scenario {

class ScenarioError : public std::runtime_error {
public:
    enum class Kind {
        File,     // about the file as a whole:   "FILE: MESSAGE"
        Located,  // at a JSON pointer:           "FILE: POINTER: MESSAGE" (root shown as "(root)")
        Syntax,   // at a line and column:        "FILE:LINE:COLUMN: MESSAGE"
    };

    // An error at a JSON pointer ("" is the document root, "/vm/memslots/0/size" a member).
    ScenarioError(std::string file, std::string pointer, std::string message)
        : ScenarioError(Kind::Located, std::move(file), std::move(pointer), 0, 0, std::move(message)) {}

    // An error about the file itself (cannot be opened, too large, ...).
    static ScenarioError file_error(std::string file, std::string message) {
        return ScenarioError(Kind::File, std::move(file), {}, 0, 0, std::move(message));
    }
    // A syntax error; line and column are 1-based (column counts UTF-8 characters).
    static ScenarioError syntax(std::string file, std::size_t line, std::size_t column,
                                std::string message) {
        return ScenarioError(Kind::Syntax, std::move(file), {}, line, column, std::move(message));
    }

    Kind kind() const noexcept { return kind_; }
    const std::string& file() const noexcept { return file_; }
    // The RFC 6901 pointer ("" for the root and for File/Syntax errors).
    const std::string& pointer() const noexcept { return pointer_; }
    // What was expected / what was wrong, without the location.
    const std::string& message() const noexcept { return message_; }
    std::size_t line() const noexcept { return line_; }      // 0 unless Kind::Syntax
    std::size_t column() const noexcept { return column_; }  // 0 unless Kind::Syntax

    // The location prefix of what(): "FILE: POINTER", "FILE:LINE:COLUMN" or "FILE".
    std::string location() const { return format_location(kind_, file_, pointer_, line_, column_); }

protected:
    // For ScenarioErrors: the first error's fields with a combined what().
    ScenarioError(const ScenarioError& first, const std::string& what)
        : std::runtime_error(what), kind_(first.kind_), file_(first.file_),
          pointer_(first.pointer_), message_(first.message_), line_(first.line_),
          column_(first.column_) {}

private:
    ScenarioError(Kind kind, std::string file, std::string pointer, std::size_t line,
                  std::size_t column, std::string message)
        : std::runtime_error(format_location(kind, file, pointer, line, column) + ": " + message),
          kind_(kind), file_(std::move(file)), pointer_(std::move(pointer)),
          message_(std::move(message)), line_(line), column_(column) {}

    static std::string format_location(Kind kind, const std::string& file,
                                       const std::string& pointer, std::size_t line,
                                       std::size_t column) {
        std::string out = file.empty() ? std::string("<input>") : file;
        switch (kind) {
        case Kind::File: break;
        case Kind::Located: out += ": "; out += pointer.empty() ? "(root)" : pointer; break;
        case Kind::Syntax:
            out += ':'; out += std::to_string(line); out += ':'; out += std::to_string(column);
            break;
        }
        return out;
    }

    Kind kind_;
    std::string file_, pointer_, message_;
    std::size_t line_ = 0, column_ = 0;
};

// Several errors reported at once. Catching ScenarioError catches this too: file(), pointer(),
// message() are those of the first error; what() lists every error, one per line.
class ScenarioErrors : public ScenarioError {
public:
    // `errors` must not be empty (an empty list is replaced by one generic error).
    explicit ScenarioErrors(std::vector<ScenarioError> errors, std::size_t dropped = 0)
        : ScenarioErrors(NonEmpty{}, non_empty(std::move(errors)), dropped) {}

    const std::vector<ScenarioError>& errors() const noexcept { return errors_; }
    // Errors past the collector's limit, counted but not kept.
    std::size_t dropped() const noexcept { return dropped_; }

private:
    struct NonEmpty {};
    ScenarioErrors(NonEmpty, std::vector<ScenarioError> errors, std::size_t dropped)
        : ScenarioError(errors.front(), join(errors, dropped)), errors_(std::move(errors)),
          dropped_(dropped) {}
    static std::vector<ScenarioError> non_empty(std::vector<ScenarioError> errors) {
        if (errors.empty()) errors.push_back(ScenarioError::file_error({}, "unknown error"));
        return errors;
    }
    static std::string join(const std::vector<ScenarioError>& errors, std::size_t dropped) {
        std::string out;
        for (const ScenarioError& e : errors) {
            if (!out.empty()) out += '\n';
            out += e.what();
        }
        if (dropped > 0) out += "\n... and " + std::to_string(dropped) + " more errors";
        return out;
    }
    std::vector<ScenarioError> errors_;
    std::size_t dropped_ = 0;
};

// Collects errors so that a loader can report several at once:
//   ErrorCollector errs;
//   for (Node m : slots.elements()) errs.attempt([&] { load_memslot(m); });
//   errs.throw_if_any();   // one error: rethrown as is; several: ScenarioErrors
class ErrorCollector {
public:
    explicit ErrorCollector(std::size_t limit = 50) : limit_(limit == 0 ? 1 : limit) {}

    void add(const ScenarioError& e) {
        if (const auto* many = dynamic_cast<const ScenarioErrors*>(&e)) {
            for (const ScenarioError& one : many->errors()) add_one(one);
            dropped_ += many->dropped();
        } else {
            add_one(e);
        }
    }
    // Runs f(); a ScenarioError it throws is recorded. Returns true if f() completed.
    template <class F>
    bool attempt(F&& f) {
        try {
            std::forward<F>(f)();
            return true;
        } catch (const ScenarioError& e) {
            add(e);
            return false;
        }
    }
    bool empty() const noexcept { return errors_.empty(); }
    std::size_t size() const noexcept { return errors_.size() + dropped_; }
    const std::vector<ScenarioError>& errors() const noexcept { return errors_; }

    void throw_if_any() const {
        if (errors_.empty()) return;
        if (errors_.size() == 1 && dropped_ == 0) throw errors_.front();
        throw ScenarioErrors(errors_, dropped_);
    }

private:
    void add_one(const ScenarioError& e) {
        if (errors_.size() < limit_) errors_.push_back(e);
        else ++dropped_;
    }
    std::size_t limit_;
    std::vector<ScenarioError> errors_;
    std::size_t dropped_ = 0;
};

// ---- message helpers ------------------------------------------------------------------------

namespace detail {
// Escapes s for printing: control characters as \n, \t, \r or \u00XX and invalid UTF-8 bytes as
// \xNN, so the result is valid UTF-8 and safe in a terminal or a JSON string. With
// escape_quotes, '"' and '\\' are escaped too. Stops after max_chars characters and sets *cut.
inline std::string escape_text(std::string_view s, bool escape_quotes, std::size_t max_chars,
                               bool* cut) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    std::size_t chars = 0, i = 0;
    if (cut) *cut = false;
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    while (i < s.size()) {
        if (chars == max_chars) {
            if (cut) *cut = true;
            break;
        }
        const unsigned char c = byte(i);
        const std::size_t len =
            c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool valid = len != 0 && i + len <= s.size();
        for (std::size_t k = 1; valid && k < len; ++k) valid = (byte(i + k) & 0xc0) == 0x80;
        if (valid && len > 1) {
            // Reject overlong forms, surrogates and values above U+10FFFF.
            std::uint32_t cp = c & (0x7fu >> len);
            for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (byte(i + k) & 0x3fu);
            static constexpr std::uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
            valid = cp >= min_cp[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        }
        if (!valid) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xf];
            i += 1;
        } else if (len > 1) {
            out.append(s.substr(i, len));
            i += len;
        } else {
            switch (c) {
            case '"': out += escape_quotes ? "\\\"" : "\""; break;
            case '\\': out += escape_quotes ? "\\\\" : "\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 0xf];
                } else {
                    out += static_cast<char>(c);
                }
            }
            i += 1;
        }
        ++chars;
    }
    return out;
}
}  // namespace detail

// `s` as a JSON-style quoted string, safe to print and to embed in JSON (see escape_text).
// Longer than max_chars characters: cut on a character boundary, "..." after the closing quote.
inline std::string quote(std::string_view s, std::size_t max_chars = 60) {
    bool cut = false;
    std::string out = "\"" + detail::escape_text(s, true, max_chars, &cut) + "\"";
    if (cut) out += "...";
    return out;
}

// s with control characters and invalid UTF-8 escaped, quotes left alone (for messages
// from other libraries that may quote raw input).
inline std::string printable(std::string_view s) {
    return detail::escape_text(s, false, static_cast<std::size_t>(-1), nullptr);
}

// "\"a\", \"b\", \"c\"" — each item quoted, comma-separated.
inline std::string quoted_list(std::span<const std::string_view> items) {
    std::string out;
    for (std::string_view item : items) {
        if (!out.empty()) out += ", ";
        out += quote(item);
    }
    return out;
}
inline std::string quoted_list(std::span<const std::string> items) {
    std::string out;
    for (const std::string& item : items) {
        if (!out.empty()) out += ", ";
        out += quote(item);
    }
    return out;
}
inline std::string quoted_list(std::initializer_list<std::string_view> items) {
    return quoted_list(std::span<const std::string_view>(items.begin(), items.size()));
}

}  // namespace kvmsim::scenario
