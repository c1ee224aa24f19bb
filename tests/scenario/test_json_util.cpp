#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

#include "sim/scenario/json_util.hpp"

using namespace kvmsim::scenario;
using kvmsim::engine::Time;
using nlohmann::json;

namespace {

// The ScenarioError thrown by f, or a failed test if none is thrown.
template <class F>
ScenarioError error_of(F&& f) {
    try {
        f();
    } catch (const ScenarioError& e) {
        return e;
    }
    FAIL("expected a ScenarioError");
    return ScenarioError("", "", "");
}

ScenarioError syntax_error_of(const std::string& text) {
    return error_of([&] { parse_json_text(text, "f.json"); });
}

// A scratch directory unique to this process, removed at the end of the test.
struct TempDir {
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("kvmsim_test_json_util_" + std::to_string(::getpid()));
    TempDir() { std::filesystem::create_directories(path); }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::filesystem::path write(const std::string& name, const std::string& text) const {
        const auto p = path / name;
        std::ofstream(p, std::ios::binary) << text;
        return p;
    }
};

const char* kDoc = R"({
  "name": "zap",
  "count": 5,
  "big": 18446744073709551615,
  "neg": -3,
  "ratio": 0.25,
  "flag": true,
  "nothing": null,
  "vm": {
    "memslots": [
      {"size": "1G", "base": 4096, "lat": "15us", "freq": "3.1GHz", "mode": "wrte"},
      {"size": "1.3K", "base": -1, "lat": 15, "freq": 3, "mode": 5}
    ]
  },
  "weird/key~": {"x": 1},
  "list": [1, 2, 3]
})";

enum class Lock { Write, Read };

}  // namespace

// ---- ScenarioError ------------------------------------------------------------------------------

TEST_CASE("ScenarioError formats FILE: POINTER: MESSAGE and FILE:LINE:COLUMN: MESSAGE", "[scenario][json]") {
    const ScenarioError e("seeds/003-zap.json", "/mmu/knobs/zap_lock", "expected one of \"write\"");
    CHECK(std::string(e.what()) == "seeds/003-zap.json: /mmu/knobs/zap_lock: expected one of \"write\"");
    CHECK(e.file() == "seeds/003-zap.json");
    CHECK(e.pointer() == "/mmu/knobs/zap_lock");
    CHECK(e.message() == "expected one of \"write\"");
    CHECK(e.line() == 0);
    CHECK(e.column() == 0);
    CHECK(e.kind() == ScenarioError::Kind::Located);
    CHECK(e.location() == "seeds/003-zap.json: /mmu/knobs/zap_lock");

    CHECK(std::string(ScenarioError("f.json", "", "m").what()) == "f.json: (root): m");
    CHECK(std::string(ScenarioError("", "/a", "m").what()) == "<input>: /a: m");

    const auto s = ScenarioError::syntax("f.json", 3, 5, "unexpected string literal");
    CHECK(std::string(s.what()) == "f.json:3:5: unexpected string literal");
    CHECK(s.kind() == ScenarioError::Kind::Syntax);
    CHECK(s.line() == 3);
    CHECK(s.column() == 5);
    CHECK(s.pointer().empty());

    const auto f = ScenarioError::file_error("f.json", "cannot open file: No such file or directory");
    CHECK(std::string(f.what()) == "f.json: cannot open file: No such file or directory");
    CHECK(f.kind() == ScenarioError::Kind::File);

    const std::runtime_error& base = e;  // catchable as a standard exception
    CHECK(std::string(base.what()) == e.what());
}

TEST_CASE("ErrorCollector reports several errors at once", "[scenario][json]") {
    ErrorCollector none;
    CHECK(none.attempt([] {}));
    CHECK(none.empty());
    CHECK_NOTHROW(none.throw_if_any());

    ErrorCollector one;
    CHECK_FALSE(one.attempt([] { throw ScenarioError("f.json", "/a", "bad a"); }));
    try {
        one.throw_if_any();
        FAIL("no throw");
    } catch (const ScenarioErrors&) {
        FAIL("a single error is rethrown as is");
    } catch (const ScenarioError& e) {
        CHECK(std::string(e.what()) == "f.json: /a: bad a");
    }

    ErrorCollector two;
    two.attempt([] { throw ScenarioError("f.json", "/a", "bad a"); });
    two.attempt([] { throw ScenarioError("f.json", "/b", "bad b"); });
    CHECK(two.size() == 2);
    try {
        two.throw_if_any();
        FAIL("no throw");
    } catch (const ScenarioError& e) {  // catching the base catches the list
        CHECK(std::string(e.what()) == "f.json: /a: bad a\nf.json: /b: bad b");
        CHECK(e.pointer() == "/a");  // the first error's fields
        const auto* many = dynamic_cast<const ScenarioErrors*>(&e);
        REQUIRE(many != nullptr);
        CHECK(many->errors().size() == 2);
        CHECK(many->errors()[1].pointer() == "/b");
    }

    // Nested lists are flattened; past the limit errors are counted, not kept.
    ErrorCollector limited(2);
    limited.add(ScenarioErrors({ScenarioError("f", "/1", "x"), ScenarioError("f", "/2", "y")}));
    limited.add(ScenarioError("f", "/3", "z"));
    CHECK(limited.errors().size() == 2);
    CHECK(limited.size() == 3);
    const auto e = error_of([&] { limited.throw_if_any(); });
    CHECK(std::string(e.what()) == "f: /1: x\nf: /2: y\n... and 1 more errors");

    // Other exceptions are not swallowed.
    ErrorCollector other;
    CHECK_THROWS_AS(other.attempt([] { throw std::logic_error("bug"); }), std::logic_error);
}

TEST_CASE("quote and printable escape what cannot be shown and cut long text", "[scenario][json]") {
    CHECK(quote("abc") == "\"abc\"");
    CHECK(quote("a\"b\\c\n\t\r\x01\x7f") == R"("a\"b\\c\n\t\r\u0001\u007f")");
    CHECK(quote("caf\xc3\xa9") == "\"caf\xc3\xa9\"");         // valid UTF-8 kept
    CHECK(quote("\xff") == R"("\xff")");                       // invalid byte
    CHECK(quote("\xc0\xaf") == R"("\xc0\xaf")");               // overlong '/'
    CHECK(quote("\xed\xa0\x80") == R"("\xed\xa0\x80")");       // UTF-16 surrogate
    CHECK(quote("\xe2\x82") == R"("\xe2\x82")");               // truncated sequence
    CHECK(quote(std::string(100, 'a'), 10) == "\"aaaaaaaaaa\"...");
    CHECK(quote(std::string(10, 'a'), 10) == "\"aaaaaaaaaa\"");
    CHECK(quote("\xc3\xa9\xc3\xa9\xc3\xa9", 2) == "\"\xc3\xa9\xc3\xa9\"...");  // cut on a character
    CHECK(printable("last read: '\"x\xff'") == R"(last read: '"x\xff')");
    CHECK(quoted_list({"a", "b"}) == R"("a", "b")");
}

// ---- parsing ------------------------------------------------------------------------------------

TEST_CASE("parse_json_text: a missing comma is reported at line 3, column 5", "[scenario][json]") {
    const auto e = syntax_error_of("{\n  \"a\": 1\n    \"b\": 2\n}");
    CHECK(e.kind() == ScenarioError::Kind::Syntax);
    CHECK(e.file() == "f.json");
    CHECK(e.line() == 3);
    CHECK(e.column() == 5);
    CHECK(e.message() ==
          "syntax error while parsing object - unexpected string literal; expected '}' (missing ',' before it?)");
    CHECK(std::string(e.what()) ==
          "f.json:3:5: syntax error while parsing object - unexpected string literal; expected '}' (missing ',' before it?)");
    // CRLF line endings give the same position.
    const auto crlf = syntax_error_of("{\r\n  \"a\": 1\r\n    \"b\": 2\r\n}");
    CHECK(crlf.line() == 3);
    CHECK(crlf.column() == 5);
}

TEST_CASE("parse_json_text: syntax errors carry line, column and a cleaned message", "[scenario][json]") {
    struct Case {
        std::string text;
        std::size_t line, column;
        std::string message;
    };
    const std::vector<Case> cases{
        {"{\"a\": 1,}", 1, 9,
         "syntax error while parsing object key - unexpected '}'; expected string literal (trailing commas are not allowed)"},
        {"[1,\n 2,\n]", 3, 1,
         "syntax error while parsing value - unexpected ']'; expected '[', '{', or a literal (trailing commas are not allowed)"},
        {"", 1, 1, "syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal"},
        {"[1, 2", 1, 6, "syntax error while parsing array - unexpected end of input; expected ']'"},
        {"[1 true]", 1, 4, "syntax error while parsing array - unexpected true literal; expected ']' (missing ',' before it?)"},
        {"{\"a\": tru}", 1, 10, "syntax error while parsing value - invalid literal; last read: '\"a\": tru}'"},
        {"{\"a\" 1}", 1, 6, "syntax error while parsing object separator - unexpected number literal; expected ':'"},
        {"{} {}", 1, 4, "syntax error while parsing value - unexpected '{'; expected end of input"},
        {"// comment\n{}", 1, 1, "syntax error while parsing value - invalid literal; last read: '/'"},
        {"{\"a\": 1e400}", 1, 7, "number overflow parsing '1e400'"},
        // Columns count characters, not bytes: "é" is one column.
        {"{\"\xc3\xa9\": 1 \"x\"}", 1, 9,
         "syntax error while parsing object - unexpected string literal; expected '}' (missing ',' before it?)"},
        // A raw newline inside a string: reported where it is, on line 2.
        {"{\"a\":\n  \"abc\ndef\"}", 2, 7,
         "syntax error while parsing value - invalid string: control character U+000A (LF) must be escaped to "
         "\\u000A or \\n; last read: '\"abc<U+000A>'"},
        // Invalid UTF-8 is escaped in the message.
        {"{\"a\": \"x\xff\"}", 1, 9,
         "syntax error while parsing value - invalid string: ill-formed UTF-8 byte; last read: '\"x\\xff'"},
        // A UTF-8 byte order mark is skipped and not counted as a column.
        {"\xef\xbb\xbf{\"a\":1 x}", 1, 8, "syntax error while parsing object - invalid literal; last read: '1 x'; expected '}'"},
        {std::string("[\0]", 3), 1, 2, "unexpected NUL byte (is this a JSON text file?)"},
    };
    for (const Case& c : cases) {
        INFO(c.text);
        const auto e = syntax_error_of(c.text);
        CHECK(e.kind() == ScenarioError::Kind::Syntax);
        CHECK(e.line() == c.line);
        CHECK(e.column() == c.column);
        CHECK(e.message() == c.message);
    }
}

TEST_CASE("line_column counts lines at LF and columns in characters", "[scenario][json]") {
    using LC = std::pair<std::size_t, std::size_t>;
    CHECK(line_column("ab\ncd", 0) == LC{1, 1});
    CHECK(line_column("ab\ncd", 2) == LC{1, 3});
    CHECK(line_column("ab\ncd", 3) == LC{2, 1});
    CHECK(line_column("ab\ncd", 4) == LC{2, 2});
    CHECK(line_column("ab\ncd", 99) == LC{2, 3});  // clamped to the end
    CHECK(line_column("\xc3\xa9x", 2) == LC{1, 2});
    CHECK(line_column("", 0) == LC{1, 1});
}

TEST_CASE("parse_json_text: duplicate keys and excessive nesting are located errors", "[scenario][json]") {
    auto e = syntax_error_of(R"({"a": {"b": 1, "b": 2}})");
    CHECK(std::string(e.what()) == R"(f.json: /a: duplicate key "b")");
    CHECK(e.kind() == ScenarioError::Kind::Located);
    e = syntax_error_of(R"({"x": 1, "x": 1})");
    CHECK(std::string(e.what()) == R"(f.json: (root): duplicate key "x")");
    e = syntax_error_of(R"({"l": [{}, {"k": 1, "k": [2]}]})");
    CHECK(e.pointer() == "/l/1");
    e = syntax_error_of(R"({"a/b": {"~": {"k": 1, "k": 2}}})");
    CHECK(e.pointer() == "/a~1b/~0");

    // kMaxJsonDepth levels parse; one more is an error at the too-deep value.
    const std::size_t d = kMaxJsonDepth;
    CHECK_NOTHROW(parse_json_text(std::string(d, '[') + std::string(d, ']'), "f.json"));
    e = syntax_error_of(std::string(d + 1, '[') + std::string(d + 1, ']'));
    std::string deep;
    for (std::size_t i = 0; i < d; ++i) deep += "/0";
    CHECK(e.pointer() == deep);
    CHECK(e.message() == "nesting is deeper than 256 levels");
    // Far deeper input is still just an error (no stack overflow).
    CHECK_THROWS_AS(parse_json_text(std::string(1'000'000, '['), "f.json"), ScenarioError);
}

TEST_CASE("parse_json_text: valid documents keep every JSON type", "[scenario][json]") {
    const json j = parse_json_text(
        "\xef\xbb\xbf{\"u\": 18446744073709551615, \"i\": -1, \"f\": 1.5, \"s\": \"x\", \"b\": false, "
        "\"n\": null, \"a\": [1, [2]], \"o\": {\"k\": {}}}",
        "f.json");
    CHECK(j["u"].is_number_unsigned());
    CHECK(j["u"].get<std::uint64_t>() == std::numeric_limits<std::uint64_t>::max());
    CHECK(j["i"].get<std::int64_t>() == -1);
    CHECK(j["f"].get<double>() == 1.5);
    CHECK(j["s"] == "x");
    CHECK(j["b"] == false);
    CHECK(j["n"].is_null());
    CHECK(j["a"] == json::parse("[1, [2]]"));
    CHECK(j["o"] == json::parse(R"({"k": {}})"));
    CHECK(parse_json_text("3", "f.json") == json(3));
    CHECK(parse_json_text(kDoc, "f.json") == json::parse(kDoc));
}

TEST_CASE("parse_json_file names the file in every error", "[scenario][json]") {
    TempDir dir;
    const auto good = dir.write("good.json", R"({"a": [1, 2]})");
    CHECK(parse_json_file(good) == json::parse(R"({"a": [1, 2]})"));

    const auto bad = dir.write("bad.json", "{\n  \"a\": 1\n    \"b\": 2\n}");
    auto e = error_of([&] { parse_json_file(bad); });
    CHECK(e.file() == bad.string());
    CHECK(e.line() == 3);
    CHECK(e.column() == 5);

    const auto missing = dir.path / "missing.json";
    e = error_of([&] { parse_json_file(missing); });
    CHECK(std::string(e.what()) == missing.string() + ": cannot open the file (No such file or directory)");
    CHECK(e.kind() == ScenarioError::Kind::File);

    e = error_of([&] { parse_json_file(dir.path); });
    CHECK(std::string(e.what()) == dir.path.string() + ": expected a JSON file (a regular file), got a directory");

    const auto big = dir.write("big.json", std::string(kMaxJsonFileBytes + 1, ' '));
    e = error_of([&] { parse_json_file(big); });
    CHECK(e.message() == "the file is too large (" + std::to_string(kMaxJsonFileBytes + 1) + " bytes; the limit is 64M)");

    const auto empty = dir.write("empty.json", "");
    e = error_of([&] { parse_json_file(empty); });
    CHECK(e.line() == 1);
    CHECK(e.column() == 1);
}

// ---- merge patch --------------------------------------------------------------------------------

TEST_CASE("merge_patch follows RFC 7386, all of Appendix A", "[scenario][json]") {
    struct Case {
        const char *original, *patch, *result;
    };
    const Case cases[] = {
        {R"({"a":"b"})", R"({"a":"c"})", R"({"a":"c"})"},
        {R"({"a":"b"})", R"({"b":"c"})", R"({"a":"b","b":"c"})"},
        {R"({"a":"b"})", R"({"a":null})", R"({})"},
        {R"({"a":"b","b":"c"})", R"({"a":null})", R"({"b":"c"})"},
        {R"({"a":["b"]})", R"({"a":"c"})", R"({"a":"c"})"},
        {R"({"a":"c"})", R"({"a":["b"]})", R"({"a":["b"]})"},
        {R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})", R"({"a":{"b":"d"}})"},
        {R"({"a":[{"b":"c"}]})", R"({"a":[1]})", R"({"a":[1]})"},
        {R"(["a","b"])", R"(["c","d"])", R"(["c","d"])"},
        {R"({"a":"b"})", R"(["c"])", R"(["c"])"},
        {R"({"a":"foo"})", R"(null)", R"(null)"},
        {R"({"a":"foo"})", R"("bar")", R"("bar")"},
        {R"({"e":null})", R"({"a":1})", R"({"e":null,"a":1})"},
        {R"([1,2])", R"({"a":"b","c":null})", R"({"a":"b"})"},
        {R"({})", R"({"a":{"bb":{"ccc":null}}})", R"({"a":{"bb":{}}})"},
    };
    for (const Case& c : cases) {
        INFO(c.original << " + " << c.patch);
        const json original = json::parse(c.original), patch = json::parse(c.patch);
        const json expected = json::parse(c.result);
        CHECK(merge_patch(original, patch) == expected);
        json in_place = original;
        apply_merge_patch(in_place, patch);
        CHECK(in_place == expected);
        json theirs = original;  // nlohmann's own merge_patch agrees
        theirs.merge_patch(patch);
        CHECK(theirs == expected);
    }
}

TEST_CASE("merge_patch: the RFC 7386 section 3 example, and a patch stored inside its target", "[scenario][json]") {
    const json target = json::parse(R"({
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged"})");
    const json patch = json::parse(R"({
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": null},
        "tags": ["example"]})");
    CHECK(merge_patch(target, patch) == json::parse(R"({
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890"})"));

    // A variant that deletes the variants it lives in.
    json doc = json::parse(R"({"x": 1, "variants": {"after": {"x": 2, "variants": null}}})");
    apply_merge_patch(doc, doc["variants"]["after"]);
    CHECK(doc == json::parse(R"({"x": 2})"));
    json self = json::parse(R"({"a": null, "b": {"c": null, "d": 1}})");
    apply_merge_patch(self, self);
    CHECK(self == json::parse(R"({"b": {"d": 1}})"));
}

// ---- pointers and names ---------------------------------------------------------------------------

TEST_CASE("JSON pointers escape ~ and / as RFC 6901 says", "[scenario][json]") {
    CHECK(json_pointer_escape("memslots") == "memslots");
    CHECK(json_pointer_escape("a/b") == "a~1b");
    CHECK(json_pointer_escape("m~n") == "m~0n");
    CHECK(json_pointer_escape("~/") == "~0~1");
    CHECK(json_pointer_escape("~1") == "~01");
    CHECK(json_pointer_append("", "vm") == "/vm");
    CHECK(json_pointer_append("/vm", "a/b") == "/vm/a~1b");
    CHECK(json_pointer_append("/vm/memslots", std::size_t{0}) == "/vm/memslots/0");
    CHECK(json_pointer_append("", "") == "/");

    // Every pointer a Node reports resolves, with nlohmann's RFC 6901 implementation, to the node.
    const json doc = json::parse(R"({"a/b": {"~": [10, {"": 7}]}})");
    const Node root(doc, "f.json");
    const Node n = root["a/b"]["~"][1][""];
    CHECK(n.pointer() == "/a~1b/~0/1/");
    CHECK(doc.at(json::json_pointer(n.pointer())) == 7);
    CHECK(std::string(error_of([&] { n.as_string(); }).what()) == "f.json: /a~1b/~0/1/: expected a string, got 7");
}

TEST_CASE("did_you_mean: case-insensitive edit distance, threshold and tie-break", "[scenario][json]") {
    CHECK(did_you_mean("memslot", {"memslots", "vcpus"}) == "memslots");
    CHECK(did_you_mean("wrte", {"write", "read", "drop_write_zap_read"}) == "write");
    CHECK(did_you_mean("WRITE", {"write", "read"}) == "write");
    CHECK(did_you_mean("wirte", {"write"}) == "write");          // transposition counts 1
    CHECK(did_you_mean("x86_tpd", {"x86_tdp", "x86_shadow"}) == "x86_tdp");
    CHECK(did_you_mean("xyz", {"write", "read"}) == std::nullopt);
    CHECK(did_you_mean("abcdef", {"abcxyz"}) == std::nullopt);   // 3 > max(1, 6/3)
    CHECK(did_you_mean("abcdef", {"abcdxy"}) == "abcdxy");       // 2 <= 2
    CHECK(did_you_mean("a", {"b"}) == "b");                      // max(1, ...) = 1
    CHECK(did_you_mean("ab", {"cd"}) == std::nullopt);
    CHECK(did_you_mean("rea", {"read", "real"}) == "read");      // tie: first candidate
    CHECK(did_you_mean("rea", {"real", "read"}) == "real");
    CHECK(did_you_mean("writ", {"wr", "write"}) == "write");     // smallest distance wins
    CHECK(did_you_mean("x", {}) == std::nullopt);
    const std::vector<std::string> models{"x86_tdp", "x86_shadow", "arm64_stage2"};
    CHECK(did_you_mean("arm64_stage", models) == "arm64_stage2");
    CHECK(did_you_mean_suffix("arm64_stage", models) == R"( (did you mean "arm64_stage2"?))");
    CHECK(did_you_mean_suffix("riscv", models).empty());
}

TEST_CASE("describe_json and json_type_name show what was received", "[scenario][json]") {
    CHECK(describe_json(json(5)) == "5");
    CHECK(describe_json(json(-5)) == "-5");
    CHECK(describe_json(json(2.5)) == "2.5");
    CHECK(describe_json(json(4.0)) == "4.0");
    CHECK(describe_json(json(true)) == "true");
    CHECK(describe_json(json(nullptr)) == "null");
    CHECK(describe_json(json("wrte")) == "\"wrte\"");
    CHECK(describe_json(json::parse("[1,2,3]")) == "[1,2,3]");
    CHECK(describe_json(json::parse(R"({"a":1})")) == R"({"a":1})");
    json big = json::array();
    for (int i = 0; i < 100; ++i) big.push_back(i);
    CHECK(describe_json(big, 10) == "[0,1,2,3,4...");
    CHECK(describe_json(json(std::string(100, 'x')), 5) == "\"xxxxx\"...");
    CHECK(json_type_name(json(5)) == "integer");
    CHECK(json_type_name(json(5u)) == "integer");
    CHECK(json_type_name(json(0.5)) == "number");
    CHECK(json_type_name(json("s")) == "string");
    CHECK(json_type_name(json(false)) == "boolean");
    CHECK(json_type_name(json(nullptr)) == "null");
    CHECK(json_type_name(json::array()) == "array");
    CHECK(json_type_name(json::object()) == "object");
}

TEST_CASE("sha256_hex matches the FIPS 180-4 test vectors", "[scenario][json]") {
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(sha256_hex(std::string(1'000'000, 'a')) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // Padding boundaries (values from coreutils sha256sum).
    CHECK(sha256_hex(std::string(55, 'a')) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    CHECK(sha256_hex(std::string(56, 'a')) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    CHECK(sha256_hex(std::string(63, 'a')) == "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34");
    CHECK(sha256_hex(std::string(64, 'a')) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
    CHECK(sha256_hex(std::string(119, 'a')) == "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb");
    CHECK(sha256_hex(std::string(120, 'a')) == "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c");
}

TEST_CASE("canonical_json is key-sorted and compact", "[scenario][json]") {
    const json a = json::parse(R"({"b": 1, "a": [1, 2.50, "x"], "c": {"z": null, "y": true}})");
    CHECK(canonical_json(a) == R"({"a":[1,2.5,"x"],"b":1,"c":{"y":true,"z":null}})");
    const json b = json::parse(R"({"c": {"y": true, "z": null}, "a": [1, 2.5, "x"], "b": 1})");
    CHECK(sha256_hex(canonical_json(a)) == sha256_hex(canonical_json(b)));
}

// ---- Node -------------------------------------------------------------------------------------------

TEST_CASE("Node navigation tracks the pointer; missing and wrong containers are located", "[scenario][json]") {
    static_assert(!std::is_constructible_v<Node, json&&, std::string>, "a temporary document would dangle");
    const json doc = json::parse(kDoc);
    const Node root(doc, "f.json");
    CHECK(root.pointer().empty());
    CHECK(root.file() == "f.json");
    const Node slot = root["vm"]["memslots"][1];
    CHECK(slot.pointer() == "/vm/memslots/1");
    CHECK(slot["size"].pointer() == "/vm/memslots/1/size");
    CHECK(slot["size"].json() == "1.3K");
    CHECK(root["weird/key~"]["x"].pointer() == "/weird~1key~0/x");
    CHECK(root.has("vm"));
    CHECK_FALSE(root.has("vms"));
    CHECK_FALSE(root["list"].has("x"));  // never throws
    CHECK(root.find("vms") == std::nullopt);
    CHECK(root.find("vm")->pointer() == "/vm");
    CHECK(root.size() == 10);
    CHECK(root["list"].size() == 3);
    CHECK(root["count"].size() == 0);
    CHECK(root["vm"].type_name() == "object");

    const auto elements = root["list"].elements();
    REQUIRE(elements.size() == 3);
    CHECK(elements[2].pointer() == "/list/2");
    CHECK(elements[2].as_int() == 3);
    const auto members = root["vm"]["memslots"][0].members();
    REQUIRE(members.size() == 5);
    CHECK(members[0].first == "base");  // key order
    CHECK(members[0].second.pointer() == "/vm/memslots/0/base");
    CHECK(root["vm"].keys() == std::vector<std::string>{"memslots"});

    auto what = [](auto&& f) { return std::string(error_of(f).what()); };
    CHECK(what([&] { root["phases"]; }) == R"(f.json: (root): missing required key "phases")");
    CHECK(what([&] { root["vms"]; }) == R"(f.json: (root): missing required key "vms" (is "vm" a misspelling of it?))");
    CHECK(what([&] { root["vm"]["vcpus"]; }) == R"(f.json: /vm: missing required key "vcpus")");
    CHECK(what([&] { root["vm"]["memslotss"]; }) ==
          R"(f.json: /vm: missing required key "memslotss" (is "memslots" a misspelling of it?))");
    CHECK(what([&] { root["list"][3]; }) == "f.json: /list: expected at least 4 elements, got 3");
    CHECK(what([&] { root["name"][0]; }) == R"(f.json: /name: expected an array, got "zap")");
    CHECK(what([&] { root["list"]["x"]; }) == "f.json: /list: expected an object, got [1,2,3]");
    CHECK(what([&] { root["list"].get_int("x"); }) == "f.json: /list: expected an object, got [1,2,3]");
    CHECK(what([&] { root.object("list"); }) == "f.json: /list: expected an object, got [1,2,3]");
    CHECK(what([&] { root.array("weird/key~"); }) == R"(f.json: /weird~1key~0: expected an array, got {"x":1})");
    CHECK(what([&] { root.array("missing"); }) == R"(f.json: (root): missing required key "missing")");
    CHECK(what([&] { root["vm"].elements(); }).starts_with(R"(f.json: /vm: expected an array, got {"memslots":[{"base":4096,)"));
    CHECK(what([&] { root["list"].members(); }) == "f.json: /list: expected an object, got [1,2,3]");
    CHECK(root.object("vm").pointer() == "/vm");
    CHECK(root.array("list").pointer() == "/list");
    CHECK(root.opt_object("absent") == std::nullopt);
    CHECK(root.opt_array("list")->pointer() == "/list");
    CHECK(what([&] { root.opt_object("list"); }) == "f.json: /list: expected an object, got [1,2,3]");
    CHECK(what([&] { root.opt_array("vm"); }).starts_with("f.json: /vm: expected an array, got {"));

    CHECK(std::string(root["vm"].error("custom").what()) == "f.json: /vm: custom");
    CHECK(std::string(root["vm"].error_at("a/b", "custom").what()) == "f.json: /vm/a~1b: custom");
    CHECK(what([&] { root["vm"].fail("boom"); }) == "f.json: /vm: boom");
    CHECK(what([&] { root["count"].fail_expected("a list of phases"); }) ==
          "f.json: /count: expected a list of phases, got 5");
}

TEST_CASE("Node getters: strings, booleans, integers, numbers", "[scenario][json]") {
    const json doc = json::parse(kDoc);
    const Node root(doc, "f.json");
    auto what = [](auto&& f) { return std::string(error_of(f).what()); };
    constexpr auto i64min = std::numeric_limits<std::int64_t>::min();

    CHECK(root.get_string("name") == "zap");
    CHECK(what([&] { root.get_string("count"); }) == "f.json: /count: expected a string, got 5");
    CHECK(what([&] { root.get_string("missing"); }) == R"(f.json: (root): missing required key "missing")");

    CHECK(root.get_bool("flag"));
    CHECK(what([&] { root.get_bool("name"); }) == R"(f.json: /name: expected true or false, got "zap")");
    CHECK(what([&] { root.get_bool("nothing"); }) == "f.json: /nothing: expected true or false, got null");

    CHECK(root.get_int("count", 1, 8) == 5);
    CHECK(root.get_int("neg") == -3);
    CHECK(what([&] { root.get_int("count", 6, 8); }) == "f.json: /count: expected an integer between 6 and 8, got 5");
    CHECK(what([&] { root.get_int("count", 6); }) == "f.json: /count: expected an integer of at least 6, got 5");
    CHECK(what([&] { root.get_int("count", i64min, 4); }) == "f.json: /count: expected an integer of at most 4, got 5");
    CHECK(what([&] { root.get_int("ratio"); }) == "f.json: /ratio: expected an integer, got 0.25");
    CHECK(what([&] { root.get_int("big"); }) == "f.json: /big: expected an integer, got 18446744073709551615");
    CHECK(what([&] { root.get_int("list"); }) == "f.json: /list: expected an integer, got [1,2,3]");
    CHECK(what([&] { root.get_int("absent", 0, 1); }) == R"(f.json: (root): missing required key "absent")");

    CHECK(root.get_uint("big") == std::numeric_limits<std::uint64_t>::max());
    CHECK(root.get_uint("count", 5, 5) == 5);
    CHECK(what([&] { root.get_uint("neg"); }) == "f.json: /neg: expected a non-negative integer, got -3");
    CHECK(what([&] { root.get_uint("count", 0, 4); }) == "f.json: /count: expected an integer between 0 and 4, got 5");
    CHECK(what([&] { root.get_uint("count", 6); }) == "f.json: /count: expected an integer of at least 6, got 5");
    CHECK(what([&] { root.get_uint("name"); }) == R"(f.json: /name: expected a non-negative integer, got "zap")");

    CHECK(root.get_number("ratio", 0, 1) == 0.25);
    CHECK(root.get_number("count") == 5.0);
    CHECK(what([&] { root.get_number("count", 0, 1); }) == "f.json: /count: expected a number between 0 and 1, got 5");
    CHECK(what([&] { root.get_number("ratio", 0.5); }) == "f.json: /ratio: expected a number of at least 0.5, got 0.25");
    CHECK(what([&] { root.get_number("name"); }) == R"(f.json: /name: expected a number, got "zap")");
}

TEST_CASE("Node getters: sizes, times, frequencies", "[scenario][json]") {
    const json doc = json::parse(kDoc);
    const Node root(doc, "f.json");
    const Node s0 = root["vm"]["memslots"][0], s1 = root["vm"]["memslots"][1];
    auto what = [](auto&& f) { return std::string(error_of(f).what()); };

    CHECK(s0.get_size("size") == (1ull << 30));
    CHECK(s0.get_size("base") == 4096);  // a JSON integer is bytes
    CHECK(what([&] { s1.get_size("size"); }) == R"(f.json: /vm/memslots/1/size: expected a whole number of bytes, got "1.3K")");
    CHECK(what([&] { s1.get_size("base"); }) == "f.json: /vm/memslots/1/base: expected a non-negative size, got -1");
    CHECK(what([&] { s0.get_size("size", 4096, 512ull << 20); }) ==
          R"(f.json: /vm/memslots/0/size: expected a size between 4K and 512M, got "1G")");
    CHECK(what([&] { s0.get_size("size", 2ull << 30); }) ==
          R"(f.json: /vm/memslots/0/size: expected a size of at least 2G, got "1G")");
    CHECK(what([&] { s0.get_size("size", 0, 4096); }) ==
          R"(f.json: /vm/memslots/0/size: expected a size of at most 4K, got "1G")");
    CHECK(what([&] { root.get_size("flag"); }) ==
          R"(f.json: /flag: expected a size such as "4K", "2M", "20G" or "512" (bytes), got true)");
    CHECK(what([&] { root.get_size("ratio"); }) ==
          R"(f.json: /ratio: expected a size such as "4K", "2M", "20G" or "512" (bytes), got 0.25)");
    CHECK(what([&] { s0.get_size("missing"); }) == R"(f.json: /vm/memslots/0: missing required key "missing")");

    CHECK(s0.get_time("lat") == Time::us(15));
    CHECK(what([&] { s1.get_time("lat"); }) ==
          R"(f.json: /vm/memslots/1/lat: expected a time such as "15us", got 15 (add a unit: ps, ns, us, ms or s))");
    CHECK(what([&] { s0.get_time("lat", Time::ns(1), Time::us(1)); }) ==
          R"(f.json: /vm/memslots/0/lat: expected a time between 1ns and 1us, got "15us")");
    CHECK(what([&] { s0.get_time("lat", Time::ps(15'000'001)); }) ==
          R"(f.json: /vm/memslots/0/lat: expected a time of at least 15.000001us, got "15us")");
    CHECK(what([&] { s0.get_time("size"); }) ==
          R"(f.json: /vm/memslots/0/size: expected a time such as "15us" (units ps, ns, us, ms, s), got "1G")");
    CHECK(what([&] { root.get_time("flag"); }) ==
          R"(f.json: /flag: expected a time such as "15us" (units ps, ns, us, ms, s), got true)");

    CHECK(s0.get_frequency("freq") == 3'100'000'000);
    CHECK(what([&] { s1.get_frequency("freq"); }) ==
          R"(f.json: /vm/memslots/1/freq: expected a frequency such as "3.1GHz", got 3 (add a unit: Hz, kHz, MHz or GHz))");
    CHECK(what([&] { s0.get_frequency("freq", 1'000'000, 2'000'000'000); }) ==
          R"(f.json: /vm/memslots/0/freq: expected a frequency between 1MHz and 2GHz, got "3.1GHz")");
    CHECK(what([&] { root.get_frequency("nothing"); }) ==
          R"(f.json: /nothing: expected a frequency such as "3.1GHz" or "800MHz" (units Hz, kHz, MHz, GHz), got null)");
}

TEST_CASE("Node enums: choices, did-you-mean, mapped values", "[scenario][json]") {
    const json doc = json::parse(kDoc);
    const Node root(doc, "f.json");
    const Node s0 = root["vm"]["memslots"][0], s1 = root["vm"]["memslots"][1];
    auto what = [](auto&& f) { return std::string(error_of(f).what()); };

    CHECK(root.get_enum("name", {"zap", "warmup"}) == "zap");
    CHECK(what([&] { s0.get_enum("mode", {"write", "read", "drop_write_zap_read"}); }) ==
          R"(f.json: /vm/memslots/0/mode: expected one of "write", "read", "drop_write_zap_read", got "wrte" (did you mean "write"?))");
    CHECK(what([&] { s0.get_enum("mode", {"write"}); }) ==
          R"(f.json: /vm/memslots/0/mode: expected "write", got "wrte" (did you mean "write"?))");
    CHECK(what([&] { s0.get_enum("mode", {"alpha", "beta"}); }) ==
          R"(f.json: /vm/memslots/0/mode: expected one of "alpha", "beta", got "wrte")");
    CHECK(what([&] { s1.get_enum("mode", {"write", "read"}); }) ==
          R"(f.json: /vm/memslots/1/mode: expected one of "write", "read", got 5)");
    const std::vector<std::string> registry{"write", "read"};
    CHECK(what([&] { s0.get_enum("mode", registry); }) ==
          R"(f.json: /vm/memslots/0/mode: expected one of "write", "read", got "wrte" (did you mean "write"?))");

    CHECK(root.get_enum_mapped<Lock>("name", {{"zap", Lock::Read}}) == Lock::Read);
    CHECK(what([&] { s0.get_enum_mapped<Lock>("mode", {{"write", Lock::Write}, {"read", Lock::Read}}); }) ==
          R"(f.json: /vm/memslots/0/mode: expected one of "write", "read", got "wrte" (did you mean "write"?))");
    CHECK(root.opt_enum_mapped<Lock>("absent", Lock::Write, {{"read", Lock::Read}}) == Lock::Write);
}

TEST_CASE("Node optional getters: default when absent, errors when present and wrong", "[scenario][json]") {
    const json doc = json::parse(kDoc);
    const Node root(doc, "f.json");
    auto what = [](auto&& f) { return std::string(error_of(f).what()); };

    CHECK(root.opt_string("absent", "dflt") == "dflt");
    CHECK(root.opt_string("name", "dflt") == "zap");
    CHECK(root.opt_bool("absent", true));
    CHECK(root.opt_int("absent", 7) == 7);
    CHECK(root.opt_int("count", 7) == 5);
    CHECK(root.opt_uint("absent", 7) == 7);
    CHECK(root.opt_number("absent", 0.5) == 0.5);
    CHECK(root.opt_size("absent", 4096) == 4096);
    CHECK(root["vm"]["memslots"][0].opt_size("size", 4096) == (1ull << 30));
    CHECK(root.opt_time("absent", Time::ns(3)) == Time::ns(3));
    CHECK(root.opt_frequency("absent", 1000) == 1000);
    CHECK(root.opt_enum("absent", "write", {"write", "read"}) == "write");
    const std::vector<std::string> registry{"zap"};
    CHECK(root.opt_enum("name", "x", registry) == "zap");

    CHECK(what([&] { root.opt_int("name", 7); }) == R"(f.json: /name: expected an integer, got "zap")");
    CHECK(what([&] { root.opt_int("count", 7, 0, 4); }) == "f.json: /count: expected an integer between 0 and 4, got 5");
    // null is a value, not an absent key.
    CHECK(what([&] { root.opt_bool("nothing", true); }) == "f.json: /nothing: expected true or false, got null");
    CHECK(what([&] { root.opt_size("name", 1); }) ==
          R"(f.json: /name: expected a size such as "4K", "2M", "20G" or "512" (bytes), got "zap")");
    CHECK(what([&] { root.opt_enum("name", "write", {"write", "read"}); }) ==
          R"(f.json: /name: expected one of "write", "read", got "zap")");
    CHECK(what([&] { root["list"].opt_int("x", 1); }) == "f.json: /list: expected an object, got [1,2,3]");
}

TEST_CASE("check_keys: unknown keys with did-you-mean, at the object's pointer", "[scenario][json]") {
    const json doc = json::parse(R"({"vm": {"memslot": [], "vcpus": 2}, "other": {"zzz": 1, "aaa": 2}})");
    const Node root(doc, "f.json");
    CHECK_NOTHROW(root.check_keys({"vm", "other"}));
    CHECK_NOTHROW(root["vm"].check_keys({"memslot", "vcpus", "extra"}));

    auto e = error_of([&] { root["vm"].check_keys({"memslots", "vcpus"}); });
    CHECK(std::string(e.what()) == R"(f.json: /vm: unknown key "memslot" (did you mean "memslots"?))");
    CHECK(e.pointer() == "/vm");

    e = error_of([&] { root.check_keys({"vm"}); });
    CHECK(std::string(e.what()) == R"(f.json: (root): unknown key "other" (expected one of "vm"))");

    // Several unknown keys: all reported, in key order.
    e = error_of([&] { root["other"].check_keys({"name", "description"}); });
    CHECK(std::string(e.what()) ==
          "f.json: /other: unknown key \"aaa\" (expected one of \"name\", \"description\")\n"
          "f.json: /other: unknown key \"zzz\" (expected one of \"name\", \"description\")");
    try {
        root["other"].check_keys({"name", "description"});
        FAIL("no throw");
    } catch (const ScenarioErrors& list) {
        CHECK(list.errors().size() == 2);
        CHECK(list.errors()[0].message() == R"(unknown key "aaa" (expected one of "name", "description"))");
    }

    e = error_of([&] { root["other"].check_keys(std::span<const std::string_view>{}); });
    CHECK(e.message().starts_with(R"(unknown key "aaa" (no keys are allowed here))"));

    const std::vector<std::string> knobs{"memslots", "vcpus"};
    e = error_of([&] { root["vm"].check_keys(knobs); });
    CHECK(e.message() == R"(unknown key "memslot" (did you mean "memslots"?))");

    e = error_of([&] { root["vm"]["vcpus"].check_keys({"a"}); });
    CHECK(std::string(e.what()) == "f.json: /vm/vcpus: expected an object, got 2");
}
