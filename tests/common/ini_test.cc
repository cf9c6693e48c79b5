// Tests of common/ini.h: the configparser dialect (delimiters, comments,
// continuation lines, strictness about duplicates), line numbers, and
// reading from a file. Cases are tables of text -> dump of what was read.
#include "common/ini.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/thread_cpu_time.h"

namespace netsem {
namespace {

// One line per section and entry: "[name]@line" and
// "key=value@line" (or "@line-last_line" when continued); '\n' inside a
// value shown as "\n"; "key (no value)@line" for a bare key.
std::string dump(const IniFile& file) {
  std::string out;
  for (const auto& section : file.sections) {
    out += "[" + section.name + "]@" + std::to_string(section.line) + "\n";
    for (const auto& entry : section.entries) {
      std::string value;
      for (char c : entry.value) value += c == '\n' ? std::string("\\n") : std::string(1, c);
      out += entry.has_value ? entry.key + "=" + value : entry.key + " (no value)";
      out += "@" + std::to_string(entry.line);
      if (entry.last_line != entry.line) out += "-" + std::to_string(entry.last_line);
      out += "\n";
    }
  }
  return out;
}

struct ParseCase {
  std::string what;
  std::string text;
  std::string expected;  // dump(), or the error message when it starts with "ERROR "
  bool allow_no_value = false;
};

void run(const std::vector<ParseCase>& cases) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto file = parse_ini(c.text, "f.ini", IniOptions{.allow_no_value = c.allow_no_value});
    if (c.expected.starts_with("ERROR ")) {
      ASSERT_FALSE(file.has_value()) << dump(*file);
      EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(file.status().message(), c.expected.substr(6));
    } else {
      ASSERT_TRUE(file.has_value()) << file.status().to_string();
      EXPECT_EQ(dump(*file), c.expected);
    }
  }
}

TEST(ParseIni, ReadsSectionsAndEntries) {
  run({
      {"both delimiters", "[a]\nk = v\nk2: v2\n", "[a]@1\nk=v@2\nk2=v2@3\n"},
      {"the first delimiter splits", "[a]\nx = y: z\nu: v = w\n", "[a]@1\nx=y: z@2\nu=v = w@3\n"},
      {"trimmed key and value, empty value", "[a]\n  k   =   v w  \nempty =\n", "[a]@1\nk=v w@2\nempty=@3\n"},
      {"no spaces", "[a]\nk=v\n", "[a]@1\nk=v@2\n"},
      {"key with a space", "[a]\nmy key = 1\n", "[a]@1\nmy key=1@2\n"},
      {"case is kept", "[Sec]\nKey = Value\n", "[Sec]@1\nKey=Value@2\n"},
      {"keys differing in case are distinct", "[a]\nK = 1\nk = 2\n", "[a]@1\nK=1@2\nk=2@3\n"},
      {"same key in two sections", "[a]\nk = 1\n[b]\nk = 2\n", "[a]@1\nk=1@2\n[b]@3\nk=2@4\n"},
      {"empty section", "[a]\n[b]\nk = 1\n", "[a]@1\n[b]@2\nk=1@3\n"},
      {"empty file", "", ""},
      {"comments only", "# one\n; two\n\n", ""},
      {"no final newline", "[a]\nk = v", "[a]@1\nk=v@2\n"},
      {"CRLF and a byte order mark", "\xEF\xBB\xBF[a]\r\nk = v\r\n", "[a]@1\nk=v@2\n"},
      {"comment after a header", "[a] ; about a\nk = v\n", "[a]@1\nk=v@2\n"},
      {"section names are not trimmed", "[ a ]\n", "[ a ]@1\n"},
  });
}

TEST(ParseIni, KeepsInlineCommentsLikeConfigparser) {
  run({
      {"whole-line comments, indented too", "# c\n; c\n[a]\n  # c\n\t; c\nk = v\n", "[a]@3\nk=v@6\n"},
      {"inline ; stays in the value", "[a]\nk = v ; not a comment\n", "[a]@1\nk=v ; not a comment@2\n"},
      {"inline # stays in the value", "[a]\nh = a # b\n", "[a]@1\nh=a # b@2\n"},
  });
}

TEST(ParseIni, JoinsContinuationLines) {
  run({
      {"deeper lines continue, blank lines inside are kept", "[a]\nk = one\n  two\n\n  three\nnext = x\n",
       "[a]@1\nk=one\\ntwo\\n\\nthree@2-5\nnext=x@6\n"},
      {"trailing blank lines dropped, comments skipped", "[a]\nk = one\n  # c\n  two\n\n\nn = 1\n",
       "[a]@1\nk=one\\ntwo@2-4\nn=1@7\n"},
      {"equal indentation does not continue", "[a]\n  k = 1\n  j = 2\n", "[a]@1\nk=1@2\nj=2@3\n"},
      {"depth is relative to the key's line", "[a]\n  k = 1\n    more\n", "[a]@1\nk=1\\nmore@2-3\n"},
      {"a deeper header continues the value, as in configparser", "[a]\nk = 1\n  [b]\n", "[a]@1\nk=1\\n[b]@2-3\n"},
      {"a deeper key line after a blank continues too", "[a]\nk = 1\n\n  j = 2\n", "[a]@1\nk=1\\n\\nj = 2@2-4\n"},
      {"tab indentation", "[a]\nk = 1\n\t2\n", "[a]@1\nk=1\\n2@2-3\n"},
      {"an empty value continued", "[a]\nk =\n  x\n", "[a]@1\nk=\\nx@2-3\n"},
      {"nothing to continue after a header", "[a]\n  k = 1\n", "[a]@1\nk=1@2\n"},
  });
}

TEST(ParseIni, RejectsWhatIsNeitherKeyNorSection) {
  run({
      {"bare word", "[a]\njunk\n", "ERROR f.ini:2: expected `key = value` or `[section]`"},
      {"empty key", "[a]\n= 1\n", "ERROR f.ini:2: expected `key = value` or `[section]`"},
      {"empty key before `:`", "[a]\n  : 1\n", "ERROR f.ini:2: expected `key = value` or `[section]`"},
      {"empty section name", "[]\n", "ERROR f.ini:1: expected `key = value` or `[section]`"},
      {"unclosed header", "[a\n", "ERROR f.ini:1: expected `key = value` or `[section]`"},
      {"text after a header", "[a] b\n", "ERROR f.ini:1: expected `key = value` or `[section]`"},
      {"key before any section", "# c\nk = v\n", "ERROR f.ini:2: `k` comes before any [section]"},
      {"duplicate section", "[a]\nk = 1\n[a]\n", "ERROR f.ini:3: duplicate section [a] (first at line 1)"},
      {"duplicate key", "[a]\nk=1\n\nk = 2\n", "ERROR f.ini:4: duplicate key `k` in [a] (first at line 2)"},
      {"the first error wins", "[a]\nx\ny\n", "ERROR f.ini:2: expected `key = value` or `[section]`"},
  });
}

// Issue 12 item 13: netsemd --check-config stopped at the first syntax
// error. With keep_going every bad line is reported and the rest read: a bad
// line is skipped with its continuation, a bad header with its section.
TEST(ParseIni, KeepsGoingPastBadLinesWhenAsked) {
  const struct {
    std::string what;
    std::string text;
    std::string expected;  // dump(), then each error on a line of its own
    bool allow_no_value = false;
  } kCases[] = {
      {"every bad line", "[a]\nx\nk = 1\n= 2\ny\n",
       "[a]@1\nk=1@3\n"
       "f.ini:2: expected `key = value` or `[section]`\n"
       "f.ini:4: expected `key = value` or `[section]`\n"
       "f.ini:5: expected `key = value` or `[section]`\n"},
      {"a bad line's continuation goes with it", "[a]\njunk\n  more = 1\nk = 2\n",
       "[a]@1\nk=2@4\nf.ini:2: expected `key = value` or `[section]`\n"},
      {"a bad header's keys are not the section's before it", "[a]\nk = 1\n[b\nk = 2\nx\n[c]\nk = 3\n",
       "[a]@1\nk=1@2\n[c]@6\nk=3@7\nf.ini:3: expected `key = value` or `[section]`\n"},
      {"a duplicate section is skipped whole", "[a]\nk = 1\n[a]\nk = 2\n[b]\nk = 3\n",
       "[a]@1\nk=1@2\n[b]@5\nk=3@6\nf.ini:3: duplicate section [a] (first at line 1)\n"},
      {"duplicate keys and keys before any section", "k = 0\nj = 0\n[a]\nk = 1\nk = 2\n",
       "[a]@3\nk=1@4\n"
       "f.ini:1: `k` comes before any [section]\n"
       "f.ini:2: `j` comes before any [section]\n"
       "f.ini:5: duplicate key `k` in [a] (first at line 4)\n"},
      {"a continued bare key, once", "[a]\nflag\n  more\n  again\nk = v\n",
       "[a]@1\nflag (no value)@2\nk=v@5\nf.ini:3: indented line continues `flag`, which has no value\n", true},
      {"a good file has no errors", "[a]\nk = 1\n  2\n", "[a]@1\nk=1\\n2@2-3\n"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    auto file = parse_ini(c.text, "f.ini", IniOptions{.allow_no_value = c.allow_no_value, .keep_going = true});
    ASSERT_TRUE(file.has_value()) << file.status().to_string();
    std::string got = dump(*file);
    for (const auto& error : file->errors) got += error.message() + "\n";
    EXPECT_EQ(got, c.expected);
    EXPECT_EQ(file->error_count, file->errors.size());
  }
  // A file of nothing but bad lines keeps kMaxErrors messages, counts all.
  std::string garbage;
  for (int i = 0; i < 1000; ++i) garbage += "junk\n";
  auto file = parse_ini("[a]\n" + garbage, "f.ini", IniOptions{.keep_going = true});
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ(file->errors.size(), IniOptions::kMaxErrors);
  EXPECT_EQ(file->error_count, 1000u);
}

TEST(ParseIni, AllowsBareKeysWhenAsked) {
  run({
      {"bare key", "[a]\nflag\nk = v\n", "[a]@1\nflag (no value)@2\nk=v@3\n", true},
      {"bare key with spaces", "[a]\n  some flag  \n", "[a]@1\nsome flag (no value)@2\n", true},
      {"a bare key cannot be continued", "[a]\nflag\n  more\n",
       "ERROR f.ini:3: indented line continues `flag`, which has no value", true},
      {"still before any section", "flag\n", "ERROR f.ini:1: `flag` comes before any [section]", true},
  });
}

// Issue 10 item 14: each key was checked against every earlier key of its
// section, so 40,000 [semaphores] lines took seconds and 500,000 never
// finished. Read linearly, 200,000 keys take a fraction of a second of CPU;
// quadratically, minutes.
TEST(ParseIni, ReadsAHugeSectionInLinearTime) {
  using namespace std::chrono_literals;
  constexpr std::size_t kKeys = 200'000;
  std::string text = "[a]\n";
  for (std::size_t i = 0; i < kKeys; ++i) text += "key" + std::to_string(i) + " = " + std::to_string(i) + "\n";
  const auto start = test_support::thread_cpu_time();
  auto file = parse_ini(text, "big.ini");
  const auto used = test_support::thread_cpu_time() - start;
  ASSERT_TRUE(file.has_value()) << file.status().message();
  EXPECT_EQ(file->sections.at(0).entries.size(), kKeys);
  EXPECT_LT(used, 10s) << "reading is not linear";
  // The index still tells a duplicate at the far end, and a key of another
  // section is none.
  auto again = parse_ini(text + "[b]\nkey0 = 1\n[a2]\nkey0 = 2\n", "big.ini");
  ASSERT_TRUE(again.has_value()) << again.status().message();
  auto duplicate = parse_ini(text + "key199999 = 2\n", "big.ini");
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_EQ(duplicate.status().message(), "big.ini:200002: duplicate key `key199999` in [a] (first at line 200001)");
}

// require_values says what a strict reading says, from the lenient one.
TEST(RequireValues, AnswersAsAStrictReading) {
  for (const std::string text : {"[a]\nk = 1\n", "[a]\nk = 1\nflag\n[b]\nx\n", "[a]\nk=1\n[b]\n\n  \nflag\n",
                                 "[a]\n[b]\nk: v\nother\n", "[a]\nk =\n  more\n"}) {
    auto lenient = parse_ini(text, "f.ini", IniOptions{.allow_no_value = true});
    ASSERT_TRUE(lenient.has_value()) << text;
    const auto strict = parse_ini(text, "f.ini");
    const Status status = require_values(*lenient);
    EXPECT_EQ(status.is_ok(), strict.has_value()) << text;
    if (!strict.has_value()) {
      EXPECT_EQ(status.message(), strict.status().message()) << text;
    }
  }
}

TEST(ParseIni, FindsSectionsAndEntries) {
  auto file = parse_ini("[a]\nk = 1\n[b]\nk = 2\nj = 3\n", "dir/x.ini");
  ASSERT_TRUE(file.has_value());
  ASSERT_NE(file->find("b"), nullptr);
  EXPECT_EQ(file->find("b")->line, 3);
  ASSERT_NE(file->find("b")->find("j"), nullptr);
  EXPECT_EQ(file->find("b")->find("j")->value, "3");
  EXPECT_EQ(file->find("b")->find("k")->value, "2");
  EXPECT_EQ(file->find("b")->find("K"), nullptr);
  EXPECT_EQ(file->find("c"), nullptr);
  EXPECT_EQ(file->find("A"), nullptr);
  EXPECT_EQ(file->location(5), "dir/x.ini:5");
}

class ReadIniFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("netsem_ini_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(ReadIniFile, ReadsAFileAndNamesItInMessages) {
  const auto good = write("good.ini", "[a]\nk = v\n");
  auto file = read_ini_file(good);
  ASSERT_TRUE(file.has_value()) << file.status().to_string();
  EXPECT_EQ(file->file_name, good.string());
  EXPECT_EQ(file->find("a")->find("k")->value, "v");

  const auto bad = write("bad.ini", "[a]\n\nnope\n");
  auto error = read_ini_file(bad);
  ASSERT_FALSE(error.has_value());
  EXPECT_EQ(error.status().message(), bad.string() + ":3: expected `key = value` or `[section]`");

  const auto bare = write("bare.ini", "[a]\nflag\n");
  EXPECT_FALSE(read_ini_file(bare).has_value());
  EXPECT_TRUE(read_ini_file(bare, IniOptions{.allow_no_value = true}).has_value());
}

TEST_F(ReadIniFile, ReportsUnreadableFiles) {
  const auto missing = dir_ / "missing.ini";
  auto file = read_ini_file(missing);
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.status().code(), StatusCode::kIoError);
  EXPECT_EQ(file.status().message(), missing.string() + ": cannot read: No such file or directory");

  auto directory = read_ini_file(dir_);
  ASSERT_FALSE(directory.has_value());
  EXPECT_EQ(directory.status().code(), StatusCode::kIoError);
  EXPECT_EQ(directory.status().message(), dir_.string() + ": cannot read: is a directory");
}

TEST_F(ReadIniFile, ReadsTextByteForByte) {
  const std::string text("[a]\r\nk = \xc3\xa9\0x\n", 15);
  auto read = read_text_file(write("raw.ini", text));
  ASSERT_TRUE(read.has_value()) << read.status().to_string();
  EXPECT_EQ(*read, text);
  auto empty = read_text_file(write("empty.ini", ""));
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(*empty, "");
}

}  // namespace
}  // namespace netsem
